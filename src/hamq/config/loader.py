"""Load and validate ``broker.xml`` (ActiveMQ vocabulary) into :class:`BrokerConfig`.

Nothing may start on a bad config, and a config error is read by a person, so
every element and attribute is checked here once, and each error names the
file, the line, the problem and the fix (``ConfigError``). Unknown names are
errors, not warnings: a misspelt ``lockKeepAlivePeriod`` silently ignored is
how two masters happen.

Rules worth knowing:

* The root is ``<broker>``, optionally wrapped in a Spring ``<beans>``; the
  ActiveMQ core namespace or no namespace is accepted.
* Paths must be absolute (Ansible's ``validate:`` checks a copy of the file in
  a temporary directory, so "relative to the file" would mean two things).
* ``dataDirectory`` may be omitted unless ``schedulerSupport="true"``; then it
  defaults to the parent of the kahaDB directory and is not checked.
* The locker type is the element name inside ``<locker>`` with a trailing
  ``-locker`` removed (``<shared-file-locker>`` -> ``shared-file``).
* ``stomp+nio`` is read as ``stomp`` and ``stomp+nio+ssl`` as ``stomp+ssl``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import stat
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Union

from hamq.config.errors import ConfigError
from hamq.config.model import (
    BrokerConfig,
    ConnectorConfig,
    KahaDBConfig,
    LockerConfig,
    StatusEndpointConfig,
)
from hamq.config.values import (
    INT32_MAX,
    ValueProblem,
    closest,
    parse_bool,
    parse_enum,
    parse_int,
    parse_size,
    parse_uri,
)
from hamq.config.xmltree import Element, read_tree

__all__ = ["ConfigError", "load_config", "add_arguments", "main_check", "summary"]

ACTIVEMQ_NS = "http://activemq.apache.org/schema/core"
SPRING_BEANS_NS = "http://www.springframework.org/schema/beans"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

SYNC_STRATEGIES = ("always", "periodic", "never")
STOMP_SCHEMES = {
    "stomp": "stomp",
    "stomp+nio": "stomp",
    "stomp+ssl": "stomp+ssl",
    "stomp+nio+ssl": "stomp+ssl",
}

#: Connector URI options hamq understands. ``transport.`` / ``wireFormat.``
#: prefixes (as ActiveMQ users write them) are removed before the lookup.
CONNECTOR_OPTIONS = ("maxFrameSize", "maxHeaders", "maxHeaderLength", "maximumConnections", "needClientAuth",
                     "connectAttemptTimeout", "hbGracePeriodMultiplier", "maxPendingBytes")

#: Persistence adapters ActiveMQ has and hamq refuses, with why.
_REFUSED_ADAPTERS = {
    "levelDB": "LevelDB was deprecated and removed from ActiveMQ",
    "replicatedLevelDB": "replicated LevelDB was removed from ActiveMQ; hamq replicates through shared storage",
    "amqPersistenceAdapter": "the AMQ message store was removed from ActiveMQ 5.x",
    "mKahaDB": "multiple kahaDB stores are not supported",
    "jdbcPersistenceAdapter": "JDBC stores are not supported",
    "memoryPersistenceAdapter": "a memory store loses every message on failover",
}

_BROKER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# A writable directory and a usable one: read, write and enter.
_RWX = os.R_OK | os.W_OK | os.X_OK


class _Ctx:
    """Where we are reading from, and whether to touch the filesystem."""

    def __init__(self, path: str, check_filesystem: bool):
        self.path = path
        self.check_filesystem = check_filesystem

    def error(self, line: Optional[int], problem: str, fix: str) -> ConfigError:
        return ConfigError(self.path, line, problem, fix)


class _Attrs:
    """An element's attributes, typed on read, with unknown names refused up front."""

    def __init__(self, ctx: _Ctx, el: Element, known: Iterable[str], hints: Optional[Dict[str, str]] = None):
        self.ctx = ctx
        self.el = el
        known = tuple(known)
        hints = hints or {}
        for (ns, name), _value in el.foreign_attributes.items():
            if ns != XSI_NS:
                raise ctx.error(
                    el.line,
                    f'<{el.tag}> has attribute "{name}" in namespace {ns}, which hamq does not read',
                    f'remove the attribute "{name}"',
                )
        for name, value in el.attributes.items():
            if name in hints:
                raise ctx.error(el.line, f'<{el.tag}> attribute "{name}" is not supported', hints[name])
            if name not in known:
                raise ctx.error(el.line, *_unknown(f'<{el.tag}> has unknown attribute "{name}"', name, known))
            if "${" in value:
                raise ctx.error(
                    el.line,
                    f'<{el.tag} {name}="{value}"> uses a Spring property placeholder, which hamq does not expand',
                    "write the actual value (the Ansible role templates it)",
                )

    def has(self, name: str) -> bool:
        return name in self.el.attributes

    def raw(self, name: str, required: bool = False, example: str = "...") -> Optional[str]:
        value = self.el.attributes.get(name)
        if value is None and required:
            raise self.ctx.error(
                self.el.line,
                f'<{self.el.tag}> is missing the required attribute "{name}"',
                f'add {name}="{example}"',
            )
        return value

    def typed(self, name: str, parse: Callable[..., object], default: object, *args, **kwargs):
        value = self.el.attributes.get(name)
        if value is None:
            return default
        try:
            return parse(name, value, *args, **kwargs)
        except ValueProblem as p:
            raise self.ctx.error(self.el.line, f"<{self.el.tag}> {p.problem}", p.fix) from None


def _unknown(problem: str, name: str, known: Iterable[str]):
    known = tuple(known)
    hint = closest(name, known)
    if hint:
        return f'{problem} (did you mean "{hint}"?)', f'rename it to "{hint}"'
    allowed = ", ".join(known) if known else "none"
    return problem, f"remove it; allowed here: {allowed}"


def _no_text(ctx: _Ctx, el: Element) -> None:
    if el.text:
        line, text = el.text[0]
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise ctx.error(
            line, f'<{el.tag}> contains text "{shown}", but takes only attributes', "remove the text"
        )


def _children(ctx: _Ctx, el: Element, known: Iterable[str], namespace: str) -> Dict[str, Element]:
    """Children by name; unknown, foreign-namespace or repeated ones are errors."""
    known = tuple(known)
    _no_text(ctx, el)
    found: Dict[str, Element] = {}
    for child in el.children:
        if child.namespace != namespace:
            raise ctx.error(
                child.line,
                f"<{child.tag}> is in namespace {child.namespace or '(none)'}, "
                f"but <{el.tag}> is in {namespace or '(none)'}",
                f'put every element of the broker in one namespace: xmlns="{ACTIVEMQ_NS}" or none',
            )
        if child.tag not in known:
            raise ctx.error(
                child.line, *_unknown(f"<{el.tag}> has unknown element <{child.tag}>", child.tag, known)
            )
        if child.tag in found:
            raise ctx.error(
                child.line,
                f"<{el.tag}> has <{child.tag}> twice (first at line {found[child.tag].line})",
                "keep only one of them",
            )
        found[child.tag] = child
    return found


def _absolute_path(ctx: _Ctx, el: Element, name: str, value: str) -> Path:
    text = value.strip()
    if not text:
        raise ctx.error(
            el.line, f"<{el.tag}> {name} is empty", f'write an absolute path, e.g. {name}="/shared/orders"'
        )
    if not os.path.isabs(text):
        raise ctx.error(
            el.line,
            f'<{el.tag}> {name}="{value}" is a relative path',
            f'write an absolute path, e.g. {name}="/shared/{text.lstrip("./") or "data"}"',
        )
    return Path(os.path.normpath(text))


def _user_name(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _check_directory(ctx: _Ctx, el: Element, name: str, path: Path, what: str) -> None:
    """The directory must exist and be readable, writable and enterable by us."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ctx.error(
            el.line,
            f'<{el.tag}> {name}="{path}": the {what} directory does not exist',
            "create it or mount the shared storage first (or use --no-fs-checks to check only the syntax)",
        ) from None
    except PermissionError:
        raise ctx.error(
            el.line,
            f'<{el.tag}> {name}="{path}": a parent directory cannot be searched by {_user_name(os.geteuid())}',
            "grant search (x) permission on every parent directory to the broker user",
        ) from None
    except OSError as exc:
        raise ctx.error(
            el.line,
            f'<{el.tag}> {name}="{path}": cannot inspect the {what} directory: {exc.strerror}',
            "check that the shared storage is mounted and healthy",
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise ctx.error(
            el.line,
            f'<{el.tag}> {name}="{path}" is not a directory',
            "point it at a directory (or remove the file that is in the way)",
        )
    if not os.access(path, _RWX):
        me = _user_name(os.geteuid())
        owner = _user_name(st.st_uid)
        mode = stat.S_IMODE(st.st_mode)
        raise ctx.error(
            el.line,
            f'<{el.tag}> {name}="{path}": the {what} directory is owned by {owner} with mode {mode:04o}, '
            f"and the current user {me} cannot write to it",
            f"run the broker as its owner, or chown it to the broker user and chmod 0700 (chown hamq: {path})",
        )


# ---------------------------------------------------------------- elements


def _read_locker(ctx: _Ctx, el: Element, namespace: str) -> LockerConfig:
    _no_text(ctx, el)
    if el.attributes or el.foreign_attributes:
        name = next(iter(el.attributes), "")
        raise ctx.error(
            el.line,
            f'<locker> takes no attributes, but has "{name}"',
            "move the attribute onto the locker element inside, e.g. <locker><shared-file-locker .../></locker>",
        )
    if len(el.children) != 1:
        raise ctx.error(
            el.line,
            f"<locker> must contain exactly one locker element, found {len(el.children)}",
            'write <locker><shared-file-locker lockKeepAlivePeriod="2000"/></locker>',
        )
    child = el.children[0]
    if child.namespace != namespace:
        raise ctx.error(
            child.line,
            f"<{child.tag}> is in namespace {child.namespace or '(none)'}, but <locker> is in {namespace or '(none)'}",
            "put the locker element in the same namespace as <broker>",
        )
    if child.children:
        raise ctx.error(child.children[0].line, f"<{child.tag}> takes no child elements", "remove them")
    _no_text(ctx, child)
    locker_type = (
        child.tag[: -len("-locker")]
        if child.tag.endswith("-locker") and child.tag != "-locker"
        else child.tag
    )
    common = ("lockAcquireSleepInterval", "lockKeepAlivePeriod", "failIfLocked")
    if locker_type == "shared-file":
        # Typed and complete: a typo must not silently fall back to a default.
        attrs = _Attrs(ctx, child, common)
    else:
        # Another entry-point locker validates its own attributes; only the
        # ones every locker shares are typed here.
        attrs = _Attrs(ctx, child, tuple(child.attributes))
    cfg = LockerConfig(type=locker_type, attributes=dict(child.attributes))
    cfg.lock_acquire_sleep_interval_ms = attrs.typed(
        "lockAcquireSleepInterval", parse_int, cfg.lock_acquire_sleep_interval_ms, 1, INT32_MAX, "ms"
    )
    keep_alive = child.attributes.get("lockKeepAlivePeriod")
    if keep_alive is not None and keep_alive.strip().lstrip("+").lstrip("0") == "" and keep_alive.strip():
        raise ctx.error(
            child.line,
            f'<{child.tag}> lockKeepAlivePeriod="{keep_alive}" turns the lock keep-alive off; '
            "then a deleted or replaced lock file lets a second broker become master (AMQ-4705)",
            'use a positive period in ms, e.g. lockKeepAlivePeriod="2000"',
        )
    cfg.lock_keep_alive_period_ms = attrs.typed(
        "lockKeepAlivePeriod", parse_int, cfg.lock_keep_alive_period_ms, 1, INT32_MAX, "ms"
    )
    cfg.fail_if_locked = attrs.typed("failIfLocked", parse_bool, cfg.fail_if_locked)
    return cfg


def _read_kahadb(ctx: _Ctx, el: Element, namespace: str) -> KahaDBConfig:
    attrs = _Attrs(
        ctx,
        el,
        (
            "directory",
            "journalDiskSyncStrategy",
            "journalDiskSyncInterval",
            "journalMaxFileLength",
            "checkpointInterval",
            "checkpointJournalBytes",
            "cleanupInterval",
            "allowUnsafeStorage",
        ),
        hints={
            "enableJournalDiskSyncs": 'it is deprecated in ActiveMQ; write journalDiskSyncStrategy="always" '
            'or "never" instead',
        },
    )
    directory = _absolute_path(ctx, el, "directory", attrs.raw("directory", True, "/shared/orders/kahadb"))
    if ctx.check_filesystem:
        _check_directory(ctx, el, "directory", directory, "kahaDB")
    children = _children(ctx, el, ("locker",), namespace)
    cfg = KahaDBConfig(directory=directory)
    cfg.journal_disk_sync_strategy = attrs.typed(
        "journalDiskSyncStrategy", parse_enum, cfg.journal_disk_sync_strategy, SYNC_STRATEGIES
    )
    cfg.journal_disk_sync_interval_ms = attrs.typed(
        "journalDiskSyncInterval", parse_int, cfg.journal_disk_sync_interval_ms, 1, INT32_MAX, "ms"
    )
    cfg.journal_max_file_length = attrs.typed(
        "journalMaxFileLength", parse_size, cfg.journal_max_file_length, 64 * 1024, INT32_MAX
    )
    cfg.checkpoint_interval_ms = attrs.typed(
        "checkpointInterval", parse_int, cfg.checkpoint_interval_ms, 1, INT32_MAX, "ms"
    )
    cfg.checkpoint_journal_bytes = attrs.typed(
        "checkpointJournalBytes", parse_size, cfg.checkpoint_journal_bytes, 64 * 1024, 1 << 40
    )
    cfg.cleanup_interval_ms = attrs.typed(
        "cleanupInterval", parse_int, cfg.cleanup_interval_ms, 1, INT32_MAX, "ms"
    )
    cfg.allow_unsafe_storage = attrs.typed("allowUnsafeStorage", parse_bool, cfg.allow_unsafe_storage)
    if "locker" in children:
        cfg.locker = _read_locker(ctx, children["locker"], namespace)
    return cfg


def _read_persistence(ctx: _Ctx, el: Element, namespace: str) -> KahaDBConfig:
    _Attrs(ctx, el, ())
    for child in el.children:
        if child.tag in _REFUSED_ADAPTERS and child.namespace == namespace:
            raise ctx.error(
                child.line,
                f"<{child.tag}> is not supported: {_REFUSED_ADAPTERS[child.tag]}; kahaDB is the supported adapter",
                'use <kahaDB directory="/shared/<broker>/kahadb"/> on the shared storage',
            )
    children = _children(ctx, el, ("kahaDB",), namespace)
    if "kahaDB" not in children:
        raise ctx.error(
            el.line,
            "<persistenceAdapter> has no <kahaDB>",
            'add <kahaDB directory="/shared/<broker>/kahadb"/> inside it',
        )
    return _read_kahadb(ctx, children["kahaDB"], namespace)


def _connector_option(ctx: _Ctx, el: Element, cfg: ConnectorConfig, key: str, value: str) -> None:
    name = key
    for prefix in ("transport.", "wireFormat."):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    if name not in CONNECTOR_OPTIONS:
        problem, fix = _unknown(f'<{el.tag}> uri has unknown option "{key}"', name, CONNECTOR_OPTIONS)
        raise ctx.error(el.line, problem, fix)
    try:
        if name == "maxFrameSize":
            cfg.max_frame_size = parse_size(key, value, 1024, INT32_MAX)
        elif name == "maxHeaders":
            cfg.max_headers = parse_int(key, value, 1, 100_000)
        elif name == "maxHeaderLength":
            cfg.max_header_length = parse_size(key, value, 16, 64 * 1024 * 1024)
        elif name == "maximumConnections":
            cfg.max_connections = parse_int(key, value, 1, INT32_MAX)
        elif name == "connectAttemptTimeout":
            parse_int(key, value, 100, INT32_MAX, "ms")
        elif name == "maxPendingBytes":
            cfg.max_pending_bytes = parse_size(key, value, 64 * 1024, INT32_MAX)
        elif name == "hbGracePeriodMultiplier":
            _parse_grace(key, value)
        elif name == "needClientAuth":
            parse_bool(key, value)
            if cfg.scheme != "stomp+ssl":
                raise ValueProblem(
                    f"{key} applies only to TLS", "use a stomp+ssl:// uri or remove the option"
                )
    except ValueProblem as p:
        raise ctx.error(el.line, f"<{el.tag}> uri option {p.problem}", p.fix) from None
    cfg.options[name] = value


def _parse_grace(key: str, value: str) -> float:
    """ActiveMQ's heart-beat grace: the read timeout is the client's interval times this."""
    try:
        grace = float(value)
    except ValueError:
        grace = 0.0
    if not 1.0 <= grace <= 100.0:
        raise ValueProblem(
            f'{key}="{value}" must be a number from 1.0 to 100.0',
            "use e.g. hbGracePeriodMultiplier=1.5 (below 1.0 would drop clients that are on time)",
        )
    return grace


def _read_connectors(ctx: _Ctx, el: Element, namespace: str) -> List[ConnectorConfig]:
    _Attrs(ctx, el, ())
    _no_text(ctx, el)
    connectors: List[ConnectorConfig] = []
    seen_names: Dict[str, int] = {}
    seen_addresses: Dict[tuple, int] = {}
    for child in el.children:
        if child.namespace != namespace or child.tag != "transportConnector":
            problem, fix = _unknown(
                f"<transportConnectors> has unknown element <{child.tag}>", child.tag, ("transportConnector",)
            )
            raise ctx.error(child.line, problem, fix)
        if child.children:
            raise ctx.error(
                child.children[0].line, "<transportConnector> takes no child elements", "remove them"
            )
        _no_text(ctx, child)
        attrs = _Attrs(ctx, child, ("name", "uri"))
        uri_text = attrs.raw("uri", True, "stomp://0.0.0.0:61613")
        try:
            uri = parse_uri("uri", uri_text, STOMP_SCHEMES, "stomp://0.0.0.0:61613")
        except ValueProblem as p:
            raise ctx.error(child.line, f"<transportConnector> {p.problem}", p.fix) from None
        name = (attrs.raw("name") or uri.scheme).strip()
        if not name:
            raise ctx.error(child.line, "<transportConnector> has an empty name", 'write name="stomp"')
        if name in seen_names:
            raise ctx.error(
                child.line,
                f'two transport connectors are named "{name}" (the other is at line {seen_names[name]})',
                "give each connector its own name",
            )
        address = (uri.host, uri.port)
        if uri.port != 0 and address in seen_addresses:
            raise ctx.error(
                child.line,
                f"two transport connectors listen on {uri.host}:{uri.port} "
                f"(the other is at line {seen_addresses[address]})",
                "give each connector its own port",
            )
        seen_names[name] = child.line
        seen_addresses[address] = child.line
        cfg = ConnectorConfig(name=name, scheme=uri.scheme, host=uri.host, port=uri.port)
        for key, value in uri.options.items():
            _connector_option(ctx, child, cfg, key, value)
        connectors.append(cfg)
    return connectors


def _read_status(ctx: _Ctx, el: Element) -> StatusEndpointConfig:
    attrs = _Attrs(ctx, el, ("uri",))
    uri_text = attrs.raw("uri", True, "http://127.0.0.1:8161")
    try:
        uri = parse_uri("uri", uri_text, {"http": "http"}, "http://127.0.0.1:8161")
    except ValueProblem as p:
        raise ctx.error(el.line, f"<statusEndpoint> {p.problem}", p.fix) from None
    if uri.options:
        raise ctx.error(
            el.line,
            f'<statusEndpoint> uri="{uri_text}" has options, which it does not take',
            "remove the ?... part",
        )
    return StatusEndpointConfig(host=uri.host, port=uri.port)


def _read_broker(ctx: _Ctx, el: Element) -> BrokerConfig:
    namespace = el.namespace
    attrs = _Attrs(ctx, el, ("brokerName", "nodeName", "dataDirectory", "schedulerSupport"))
    broker_name = attrs.raw("brokerName", True, "orders").strip()
    if not _BROKER_NAME_RE.match(broker_name):
        raise ctx.error(
            el.line,
            f'<broker> brokerName="{broker_name}" is not a valid name (it becomes a directory name)',
            "use letters, digits, '.', '_' and '-' only, starting with a letter or digit, at most 128 characters",
        )
    node_name = attrs.raw("nodeName")
    if node_name is None:
        node_name = socket.gethostname()
    else:
        node_name = node_name.strip()
        if not node_name or len(node_name) > 255 or not node_name.isprintable():
            raise ctx.error(
                el.line,
                f'<broker> nodeName="{node_name}" is empty, too long or has control characters',
                "write a short printable name for this host, or omit it to use the hostname",
            )
    scheduler = attrs.typed("schedulerSupport", parse_bool, False)
    children = _children(
        ctx,
        el,
        ("persistenceAdapter", "transportConnectors", "statusEndpoint", "redeliveryPolicy", "plugins", "sslContext",
         "destinationPolicy", "systemUsage"),
        namespace,
    )
    if "persistenceAdapter" not in children:
        raise ctx.error(
            el.line,
            "<broker> has no <persistenceAdapter>",
            'add <persistenceAdapter><kahaDB directory="/shared/<broker>/kahadb"/></persistenceAdapter>',
        )
    persistence = _read_persistence(ctx, children["persistenceAdapter"], namespace)
    data_text = attrs.raw("dataDirectory")
    if data_text is not None:
        data_directory = _absolute_path(ctx, el, "dataDirectory", data_text)
        if ctx.check_filesystem:
            _check_directory(ctx, el, "dataDirectory", data_directory, "data")
    elif scheduler:
        raise ctx.error(
            el.line,
            '<broker schedulerSupport="true"> needs dataDirectory: scheduled jobs live in '
            "<dataDirectory>/<brokerName>/scheduler and must be on the shared storage to survive a takeover",
            'add dataDirectory="/shared/<broker>/data"',
        )
    else:
        data_directory = persistence.directory.parent
    connectors = []
    if "transportConnectors" in children:
        connectors = _read_connectors(ctx, children["transportConnectors"], namespace)
    status = None
    if "statusEndpoint" in children:
        status = _read_status(ctx, children["statusEndpoint"])
        for c in connectors:
            if (
                c.port
                and c.port == status.port
                and (c.host == status.host or "0.0.0.0" in (c.host, status.host))
            ):
                raise ctx.error(
                    children["statusEndpoint"].line,
                    f'<statusEndpoint> uses port {status.port}, which connector "{c.name}" also uses',
                    "give the status endpoint its own port (8161 is the usual one)",
                )
    max_redeliveries = 6
    if "redeliveryPolicy" in children:
        rp = children["redeliveryPolicy"]
        _children(ctx, rp, (), namespace)
        # -1 means "never dead-letter", as in ActiveMQ.
        max_redeliveries = _Attrs(ctx, rp, ("maximumRedeliveries",)).typed(
            "maximumRedeliveries", parse_int, 6, -1, INT32_MAX
        )
    memory_limit = None
    if "destinationPolicy" in children:
        memory_limit = _read_destination_policy(ctx, children["destinationPolicy"], namespace)
    send_fail = False
    if "systemUsage" in children:
        outer = children["systemUsage"]
        inner = _children(ctx, outer, ("systemUsage",), namespace).get("systemUsage")
        if inner is None:
            raise ctx.error(outer.line, "<systemUsage> is empty",
                            'write <systemUsage><systemUsage sendFailIfNoSpace="true"/></systemUsage> or remove it')
        _children(ctx, inner, (), namespace)
        send_fail = _Attrs(ctx, inner, ("sendFailIfNoSpace",)).typed("sendFailIfNoSpace", parse_bool, False)
    from hamq.security import config as security_config

    security = security_config.build(children.get("plugins"), children.get("sslContext"), namespace, ctx.error,
                                     ctx.check_filesystem)
    return BrokerConfig(
        broker_name=broker_name,
        node_name=node_name,
        data_directory=data_directory,
        persistence=persistence,
        connectors=connectors,
        status_endpoint=status,
        scheduler_support=scheduler,
        maximum_redeliveries=max_redeliveries,
        memory_limit=memory_limit,
        send_fail_if_no_space=send_fail,
        security=security,
    )


def _read_destination_policy(ctx: _Ctx, el: Element, namespace: str) -> Optional[int]:
    """``<destinationPolicy><policyMap><policyEntries><policyEntry queue=">" memoryLimit="64mb"/>``.

    hamq has one memory limit for every destination, so the one entry must match all of them.
    """
    shape = '<destinationPolicy><policyMap><policyEntries><policyEntry queue=">" memoryLimit="64mb"/>'
    current = el
    for tag in ("policyMap", "policyEntries", "policyEntry"):
        child = _children(ctx, current, (tag,), namespace).get(tag)
        if child is None:
            raise ctx.error(current.line, f"<{current.tag}> has no <{tag}>", f"write {shape} or remove it")
        current = child
    _children(ctx, current, (), namespace)
    attrs = _Attrs(ctx, current, ("queue", "topic", "memoryLimit", "producerFlowControl"))
    for name in ("queue", "topic"):
        pattern = attrs.raw(name)
        if pattern is not None and pattern.strip() != ">":
            raise ctx.error(current.line, f'<policyEntry {name}="{pattern}">: hamq has one policy for all '
                            "destinations and cannot match a pattern", f'write {name}=">"')
    if not attrs.has("queue") and not attrs.has("topic"):
        raise ctx.error(current.line, "<policyEntry> names no destinations", 'add queue=">"')
    if not attrs.typed("producerFlowControl", parse_bool, True):
        raise ctx.error(current.line, '<policyEntry producerFlowControl="false"> is not supported: hamq has no '
                        "temporary store to spool non-persistent messages to",
                        'remove it (producers wait for room), or refuse sends with '
                        '<systemUsage><systemUsage sendFailIfNoSpace="true"/></systemUsage>')
    return attrs.typed("memoryLimit", parse_size, None, 64 * 1024, INT32_MAX)


def _wrong_namespace(ctx: _Ctx, el: Element) -> ConfigError:
    return ctx.error(
        el.line,
        f"<{el.tag}> is in namespace {el.namespace}, but hamq reads <broker> in the ActiveMQ core namespace "
        "or in no namespace",
        f'write <broker xmlns="{ACTIVEMQ_NS}" ...>',
    )


def _find_broker(ctx: _Ctx, root: Element) -> Element:
    if root.tag == "broker":
        if root.namespace not in (ACTIVEMQ_NS, ""):
            raise _wrong_namespace(ctx, root)
        return root
    if root.tag == "beans" and root.namespace in (SPRING_BEANS_NS, ""):
        _no_text(ctx, root)
        brokers = []
        for child in root.children:
            if child.tag != "broker":
                raise ctx.error(
                    child.line,
                    f"<beans> contains <{child.tag}>; hamq reads only the <broker> element and does not "
                    "evaluate Spring beans",
                    f"remove <{child.tag}>",
                )
            if child.namespace not in (ACTIVEMQ_NS, ""):
                # Typical: <broker> without xmlns inherits the Spring beans namespace.
                raise _wrong_namespace(ctx, child)
            brokers.append(child)
        if len(brokers) != 1:
            raise ctx.error(
                root.line,
                f"<beans> must contain exactly one <broker>, found {len(brokers)}",
                "keep one <broker> per file",
            )
        return brokers[0]
    where = f" in namespace {root.namespace}" if root.namespace else ""
    raise ctx.error(
        root.line,
        f"the root element is <{root.tag}>{where}, not <broker>",
        f'start the file with <broker xmlns="{ACTIVEMQ_NS}" brokerName="...">',
    )


def load_config(path: Union[str, Path], check_filesystem: bool = True) -> BrokerConfig:
    """Read and validate ``path``; raise :class:`ConfigError` on any problem.

    ``check_filesystem=False`` skips the directory existence and permission
    checks, for validating a file before the shared storage is mounted.
    """
    ctx = _Ctx(str(path), check_filesystem)
    root = read_tree(Path(path))
    cfg = _read_broker(ctx, _find_broker(ctx, root))
    cfg.source = Path(path)
    return cfg


def summary(cfg: BrokerConfig) -> str:
    """One line saying what the config will do."""
    p = cfg.persistence
    parts = [
        f"broker {cfg.broker_name} (node {cfg.node_name})",
        f"kahaDB {p.directory} (sync {p.journal_disk_sync_strategy}, locker {p.locker.type} "
        f"keep-alive {p.locker.lock_keep_alive_period_ms} ms)",
    ]
    if cfg.connectors:
        parts.append(
            "connectors " + ", ".join(f"{c.name}={c.scheme}://{c.host}:{c.port}" for c in cfg.connectors)
        )
    else:
        parts.append("no connectors")
    if cfg.status_endpoint:
        parts.append(f"status http://{cfg.status_endpoint.host}:{cfg.status_endpoint.port}")
    if cfg.scheduler_support:
        parts.append(f"scheduler in {cfg.scheduler_directory}")
    from hamq.security.config import summary as security_summary

    parts.append(security_summary(cfg.security))
    if cfg.memory_limit is not None or cfg.send_fail_if_no_space:
        limit = f"{(cfg.memory_limit or 64 * 1024 * 1024) / (1024 * 1024):g} MiB"
        parts.append(f"memory limit {limit} per destination, "
                     + ("sends past it refused" if cfg.send_fail_if_no_space else "producers wait past it"))
    if p.allow_unsafe_storage:
        parts.append("UNSAFE STORAGE ALLOWED")
    return "; ".join(parts)


def _jsonable(cfg: BrokerConfig) -> dict:
    def conv(value):
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, dict):
            return {k: conv(v) for k, v in value.items()}
        if isinstance(value, list):
            return [conv(v) for v in value]
        return value

    return conv(asdict(cfg))


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("file", metavar="FILE", help="the broker.xml to validate")
    parser.add_argument(
        "--no-fs-checks",
        action="store_true",
        help="check syntax and values only, not that the directories exist and are writable",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def main_check(args: argparse.Namespace) -> int:
    """``hamq check-config FILE``: 0 and "OK: ..." on a good file, 1 and the error otherwise."""
    try:
        cfg = load_config(args.file, check_filesystem=not args.no_fs_checks)
    except ConfigError as exc:
        if args.json:
            print(json.dumps(exc.to_dict()))
        else:
            print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"ok": True, "summary": summary(cfg), "config": _jsonable(cfg)}))
    else:
        print(f"OK: {summary(cfg)}")
    return 0
