"""Read the security parts of ``broker.xml``: ``<plugins>`` and ``<sslContext>``.

Called by :mod:`hamq.config.loader` with its error factory, so a mistake here
reads like any other config error (file, line, problem, fix)::

    <plugins>
      <simpleAuthenticationPlugin anonymousAccessAllowed="false" usersFile="/etc/hamq/users">
        <users>
          <authenticationUser username="app" password="pbkdf2-sha256$..." groups="producers,consumers"/>
        </users>
      </simpleAuthenticationPlugin>
      <authorizationPlugin><map><authorizationMap><authorizationEntries>
        <authorizationEntry queue="orders.>" read="consumers" write="producers" admin="admins"/>
      </authorizationEntries></authorizationMap></map></authorizationPlugin>
    </plugins>
    <sslContext certFile="/etc/hamq/tls/broker.pem" keyFile="/etc/hamq/tls/broker.key" caFile="/etc/hamq/tls/ca.pem"/>

A users file has one ``username:hash:group1,group2`` per line (``#`` comments).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from hamq.config.values import ValueProblem, closest, parse_bool, parse_int
from hamq.security.authorization import check_pattern
from hamq.security.model import (
    AuthenticationConfig,
    AuthorizationConfig,
    AuthorizationEntry,
    SecurityConfig,
    TLSConfig,
    UserConfig,
)
from hamq.security.passwords import PasswordHash, PasswordHashError

#: error(line, problem, fix) -> ConfigError, from the loader.
ErrorFactory = Callable[[Optional[int], str, str], Exception]

XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
_NAME_RE = re.compile(r"^[^\s:,]{1,128}$")
_HASH_FIX = "store a salted hash instead: run `hamq hash-password` (it reads the password from standard input) " \
            "and paste its output"
#: ActiveMQ plugins hamq knows of but does not implement, with what to do instead.
_OTHER_PLUGINS = {
    "jaasAuthenticationPlugin": "JAAS is Java-only; use <simpleAuthenticationPlugin> with hashed passwords",
    "jaasCertificateAuthenticationPlugin": "certificate logins are not supported; use needClientAuth=true "
                                           "together with <simpleAuthenticationPlugin>",
    "jaasDualAuthenticationPlugin": "use <simpleAuthenticationPlugin> with hashed passwords",
}


def _attrs(el, known: Iterable[str], error: ErrorFactory) -> Dict[str, str]:
    known = tuple(known)
    for (ns, name), _ in el.foreign_attributes.items():
        if ns != XSI_NS:
            raise error(el.line, f'<{el.tag}> has attribute "{name}" in namespace {ns}, which hamq does not read',
                        f'remove the attribute "{name}"')
    for name in el.attributes:
        if name not in known:
            hint = closest(name, known)
            if hint:
                raise error(el.line, f'<{el.tag}> has unknown attribute "{name}" (did you mean "{hint}"?)',
                            f'rename it to "{hint}"')
            raise error(el.line, f'<{el.tag}> has unknown attribute "{name}"',
                        f"remove it; allowed here: {', '.join(known) or 'none'}")
    return el.attributes


def _children(el, known: Iterable[str], namespace: str, error: ErrorFactory, repeat: bool = False) -> List:
    known = tuple(known)
    if el.text:
        raise error(el.text[0][0], f"<{el.tag}> contains text, but takes only elements and attributes",
                    "remove the text")
    seen: Dict[str, int] = {}
    for child in el.children:
        if child.namespace != namespace:
            raise error(child.line, f"<{child.tag}> is in namespace {child.namespace or '(none)'}, "
                                    f"but <{el.tag}> is in {namespace or '(none)'}",
                        "put every element of the broker in one namespace")
        if child.tag not in known:
            if child.tag in _OTHER_PLUGINS:
                raise error(child.line, f"<{child.tag}> is not supported", _OTHER_PLUGINS[child.tag])
            hint = closest(child.tag, known)
            if hint:
                raise error(child.line, f"<{el.tag}> has unknown element <{child.tag}> (did you mean <{hint}>?)",
                            f"rename it to <{hint}>")
            raise error(child.line, f"<{el.tag}> has unknown element <{child.tag}>",
                        f"remove it; allowed here: {', '.join('<%s>' % k for k in known) or 'none'}")
        if not repeat and child.tag in seen:
            raise error(child.line, f"<{el.tag}> has <{child.tag}> twice (first at line {seen[child.tag]})",
                        "keep only one of them")
        seen[child.tag] = child.line
    return el.children


def _typed(el, error: ErrorFactory, name: str, parse, default, *args):
    value = el.attributes.get(name)
    if value is None:
        return default
    try:
        return parse(name, value, *args)
    except ValueProblem as p:
        raise error(el.line, f"<{el.tag}> {p.problem}", p.fix) from None


def _groups(el, error: ErrorFactory, name: str) -> Tuple[str, ...]:
    raw = el.attributes.get(name, "")
    groups = tuple(g.strip() for g in raw.split(",") if g.strip())
    for g in groups:
        if not _NAME_RE.match(g):
            raise error(el.line, f'<{el.tag}> {name}="{raw}" has an invalid group name {g!r}',
                        "use comma-separated names without spaces or colons")
    return groups


def _path(el, error: ErrorFactory, name: str, value: str) -> Path:
    text = value.strip()
    if not text or not os.path.isabs(text):
        raise error(el.line, f'<{el.tag}> {name}="{value}" is not an absolute path',
                    f'write an absolute path, e.g. {name}="/etc/hamq/..."')
    return Path(os.path.normpath(text))


def _check_file(el, error: ErrorFactory, name: str, path: Path, secret: bool) -> None:
    try:
        st = os.stat(path)
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise error(el.line, f'<{el.tag}> {name}="{path}" cannot be read: {exc.strerror}',
                    "create the file and make it readable by the broker user") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(el.line, f'<{el.tag}> {name}="{path}" is not a regular file', "point it at a file")
    if secret and st.st_mode & 0o007:
        raise error(el.line, f'<{el.tag}> {name}="{path}" has mode {stat.S_IMODE(st.st_mode):04o}, so every user '
                             "on this host can read it", f"chmod 0600 {path} (or 0640 with the broker's group)")


def _user(el, error: ErrorFactory, username: str, password: str, groups: Tuple[str, ...], where: str) -> UserConfig:
    if not _NAME_RE.match(username):
        raise error(el.line, f"{where}: user name {username!r} is empty, too long or has spaces, ':' or ','",
                    "use a plain user name")
    try:
        PasswordHash(password)
    except PasswordHashError as exc:
        if password.startswith("pbkdf2-sha256$"):
            raise error(el.line, f"{where}: the password hash of user {username!r} is damaged: {exc}",
                        _HASH_FIX) from None
        raise error(el.line, f"{where}: the password of user {username!r} is not a salted hash; plain-text "
                             "passwords are refused", _HASH_FIX) from None
    return UserConfig(username, password, groups)


def _read_users_file(el, error: ErrorFactory, path: Path) -> List[UserConfig]:
    users = []
    with open(path, "r", encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            parts = text.split(":")
            if len(parts) not in (2, 3):
                raise error(el.line, f"{path}:{number}: the line is not username:hash:groups",
                            "write one username:pbkdf2-sha256$...:group1,group2 per line")
            groups = tuple(g.strip() for g in (parts[2] if len(parts) == 3 else "").split(",") if g.strip())
            users.append(_user(el, error, parts[0].strip(), parts[1].strip(), groups, f"{path}:{number}"))
    return users


def read_authentication(el, namespace: str, error: ErrorFactory, check_filesystem: bool) -> AuthenticationConfig:
    attrs = _attrs(el, ("anonymousAccessAllowed", "anonymousUser", "anonymousGroup", "usersFile",
                        "maxLoginFailures", "maxLoginDelay"), error)
    cfg = AuthenticationConfig()
    cfg.anonymous_access_allowed = _typed(el, error, "anonymousAccessAllowed", parse_bool, False)
    cfg.anonymous_user = attrs.get("anonymousUser", cfg.anonymous_user)
    cfg.anonymous_group = attrs.get("anonymousGroup", cfg.anonymous_group)
    cfg.max_login_failures = _typed(el, error, "maxLoginFailures", parse_int, 5, 1, 1000)
    cfg.max_login_delay_s = _typed(el, error, "maxLoginDelay", parse_int, 60_000, 1000, 3_600_000, "ms") / 1000.0
    users: List[Tuple[UserConfig, int]] = []
    for child in _children(el, ("users",), namespace, error):
        _attrs(child, (), error)
        for user_el in _children(child, ("authenticationUser",), namespace, error, repeat=True):
            a = _attrs(user_el, ("username", "password", "groups"), error)
            for required in ("username", "password"):
                if required not in a:
                    raise error(user_el.line, f'<authenticationUser> is missing "{required}"',
                                f'add {required}="..."' + (f" ({_HASH_FIX})" if required == "password" else ""))
            users.append((_user(user_el, error, a["username"], a["password"], _groups(user_el, error, "groups"),
                                "<authenticationUser>"), user_el.line))
    if "usersFile" in attrs:
        cfg.users_file = _path(el, error, "usersFile", attrs["usersFile"])
        if check_filesystem:
            _check_file(el, error, "usersFile", cfg.users_file, secret=True)
            users.extend((u, el.line) for u in _read_users_file(el, error, cfg.users_file))
    for user, line in users:
        if user.username in cfg.users:
            raise error(line, f"user {user.username!r} is defined twice", "keep one definition per user")
        cfg.users[user.username] = user
    if not cfg.users and not cfg.anonymous_access_allowed and cfg.users_file is None:
        raise error(el.line, "<simpleAuthenticationPlugin> defines no users and refuses anonymous access, so "
                             "nobody could connect", "add <users><authenticationUser .../></users> or a usersFile")
    return cfg


def read_authorization(el, namespace: str, error: ErrorFactory) -> AuthorizationConfig:
    _attrs(el, (), error)
    cfg = AuthorizationConfig()
    path = ("map", "authorizationMap", "authorizationEntries")
    current = [el]
    for tag in path:
        nxt = []
        for parent in current:
            for child in _children(parent, (tag,), namespace, error):
                _attrs(child, (), error)
                nxt.append(child)
        if not nxt:
            raise error(current[0].line if current else el.line, f"<{current[0].tag}> has no <{tag}>",
                        "write <authorizationPlugin><map><authorizationMap><authorizationEntries>"
                        "<authorizationEntry .../>...")
        current = nxt
    for entries in current:
        for entry in _children(entries, ("authorizationEntry",), namespace, error, repeat=True):
            a = _attrs(entry, ("queue", "topic", "read", "write", "admin"), error)
            kinds = [k for k in ("queue", "topic") if k in a]
            if len(kinds) != 1:
                raise error(entry.line, "<authorizationEntry> needs exactly one of queue=\"...\" or topic=\"...\"",
                            'write one entry per destination kind, e.g. queue="orders.>"')
            kind = kinds[0]
            for pattern in a[kind].split(","):
                why = check_pattern(pattern.strip())
                if why:
                    raise error(entry.line, f'<authorizationEntry> {kind}="{a[kind]}" is not a valid pattern: {why}',
                                "use '.'-separated names with '*' for one segment and '>' for the rest")
            cfg.entries.append(AuthorizationEntry(kind, ",".join(p.strip() for p in a[kind].split(",")),
                                                  _groups(entry, error, "read"), _groups(entry, error, "write"),
                                                  _groups(entry, error, "admin")))
    return cfg


def read_plugins(el, namespace: str, error: ErrorFactory, check_filesystem: bool = True
                 ) -> Tuple[Optional[AuthenticationConfig], Optional[AuthorizationConfig]]:
    """``<plugins>`` -> (authentication, authorization); either may be None."""
    _attrs(el, (), error)
    authn = authz = None
    for child in _children(el, ("simpleAuthenticationPlugin", "authorizationPlugin"), namespace, error):
        if child.tag == "simpleAuthenticationPlugin":
            authn = read_authentication(child, namespace, error, check_filesystem)
        else:
            authz = read_authorization(child, namespace, error)
    return authn, authz


def read_ssl_context(el, namespace: str, error: ErrorFactory, check_filesystem: bool = True) -> TLSConfig:
    """``<sslContext certFile= keyFile= caFile=/>`` (PEM files, not Java keystores)."""
    if el.children and el.children[0].tag == "sslContext":
        raise error(el.line, "<sslContext> holds a Java-style nested <sslContext keyStore=...>",
                    'write <sslContext certFile="/etc/hamq/tls/broker.pem" keyFile="/etc/hamq/tls/broker.key" '
                    'caFile="/etc/hamq/tls/ca.pem"/> with PEM files (openssl pkcs12 converts a keystore)')
    _children(el, (), namespace, error)
    a = _attrs(el, ("certFile", "keyFile", "caFile"), error)
    for required in ("certFile", "keyFile"):
        if required not in a:
            raise error(el.line, f'<sslContext> is missing "{required}"',
                        f'add {required}="/etc/hamq/tls/broker.{"pem" if required == "certFile" else "key"}"')
    cfg = TLSConfig(_path(el, error, "certFile", a["certFile"]), _path(el, error, "keyFile", a["keyFile"]),
                    _path(el, error, "caFile", a["caFile"]) if "caFile" in a else None)
    if check_filesystem:
        _check_file(el, error, "certFile", cfg.cert_file, secret=False)
        _check_file(el, error, "keyFile", cfg.key_file, secret=True)
        if cfg.ca_file is not None:
            _check_file(el, error, "caFile", cfg.ca_file, secret=False)
        from hamq.security.tls import TLSSetupError, server_context

        try:
            server_context(cfg)
        except TLSSetupError as exc:
            problem, _, fix = str(exc).partition(". Fix: ")
            raise error(el.line, problem, fix or "check the PEM files") from None
    return cfg


def check_connectors(security: Optional[SecurityConfig], connectors, error: ErrorFactory, line: Optional[int]) -> None:
    """A ``stomp+ssl://`` connector needs ``<sslContext>``; needClientAuth needs its caFile."""
    tls = security.tls if security is not None else None
    for c in connectors:
        if c.scheme != "stomp+ssl":
            continue
        if tls is None:
            raise error(line, f'transport connector "{c.name}" uses stomp+ssl:// but the broker has no <sslContext>',
                        'add <sslContext certFile="/etc/hamq/tls/broker.pem" keyFile="/etc/hamq/tls/broker.key"/> '
                        "inside <broker>")
        if c.options.get("needClientAuth", "false").strip().lower() == "true" and tls.ca_file is None:
            raise error(line, f'transport connector "{c.name}" has needClientAuth=true but <sslContext> has no caFile',
                        'add caFile="/etc/hamq/tls/ca.pem" (the CA that signs client certificates)')


def build(plugins_el, ssl_el, namespace: str, error: ErrorFactory, check_filesystem: bool = True
          ) -> Optional[SecurityConfig]:
    """The loader's one call: None when neither element is present."""
    if plugins_el is None and ssl_el is None:
        return None
    security = SecurityConfig()
    if plugins_el is not None:
        security.authentication, security.authorization = read_plugins(plugins_el, namespace, error,
                                                                       check_filesystem)
    if ssl_el is not None:
        security.tls = read_ssl_context(ssl_el, namespace, error, check_filesystem)
    return security


def summary(security: Optional[SecurityConfig]) -> str:
    """For ``hamq check-config``: what security the file turns on."""
    if security is None or (security.authentication is None and security.authorization is None
                            and security.tls is None):
        return "no authentication (anyone may connect)"
    parts = []
    authn = security.authentication
    if authn is None:
        parts.append("no authentication (anyone may connect)")
    else:
        source = f" + {authn.users_file}" if authn.users_file else ""
        parts.append(f"authentication {len(authn.users)} users{source}"
                     + (", anonymous allowed" if authn.anonymous_access_allowed else ""))
    if security.authorization is not None:
        parts.append(f"authorization {len(security.authorization.entries)} entries")
    if security.tls is not None:
        parts.append("TLS" + (" with client CA" if security.tls.ca_file else ""))
    return ", ".join(parts)
