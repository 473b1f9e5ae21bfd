"""``hamq run``: one broker process, its roles and its master terms.

Start order (ActiveMQ's ``BrokerService``: locker, store, scheduler,
connectors last), each step in one place::

    status endpoint up            role "starting"
    acquire the master lock       role "slave" while another broker holds it
    a master term (hamq.term)     opens the store (replays the journal), recovers the
                                  destinations, starts the scheduler, opens the connectors
                                  role "master"

Losing the lock, a fence failure or a store I/O error ends the master term at
once: the connectors and every client connection close (so clients fail
over), nothing more is written, and the process exits with status 1 so that
its supervisor restarts it as a slave (a fresh process: no state of the lost
term survives). SIGTERM/SIGINT stop it gracefully (role "stopping") with exit
status 0. What happens inside a term (the durability tracker, group commit,
the lease gate against pauses) is described in hamq.term and hamq.durability.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Optional

from hamq import __version__
from hamq.term import MasterTerm

log = logging.getLogger("hamq.server")

#: Pause before waiting for the lock again after a master term ended badly.
RESTART_PAUSE_S = 1.0
#: After a failed master term, exit by force if the clean wind-down has not finished by then.
HALT_GRACE_S = 30.0


class ConnectorError(Exception):
    """A transport connector cannot be opened as configured; retrying will not help."""


class BrokerNode:
    """One broker process: its role, the lock it waits for, and the master term it runs."""

    def __init__(self, config):
        self.config = config
        self.role = "starting"
        self.started_at = time.time()
        self.locker = None
        #: The current master term (hamq.term), None while not master.
        self.term: Optional[MasterTerm] = None
        self.status_server = None
        self.stopping = False
        self._stop_event: Optional[asyncio.Event] = None
        self.tls_contexts: dict = {}
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="hamq-sync")
        self.exit_code = 0

    @property
    def epoch(self) -> Optional[int]:
        return self.term.epoch if self.term is not None else None

    # ------------------------------------------------------------------ status
    # ------------------------------------------------------------------ status
    def status(self) -> dict:
        term = self.term
        body = {
            "role": self.role,
            "brokerName": self.config.broker_name,
            "nodeName": self.config.node_name,
            "version": __version__,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "uptimeSeconds": round(time.time() - self.started_at, 3),
            "epoch": self.epoch,
            "holder": self._holder(),
            "connectors": [{"name": c.name, "scheme": c.scheme, "host": h, "port": p}
                           for c, h, p in (term.bound if term is not None else [])],
            "destinations": [],
            "durableSubscriptions": [],
            "connections": 0,
            "blockedProducers": 0,
        }
        if term is not None and term.broker is not None and self.role == "master":
            figures = term.broker.status()
            for key in ("destinations", "durableSubscriptions", "connections", "blockedProducers"):
                body[key] = figures[key]
            #: False while a pause casts doubt on the lease: nothing is read or written until it is confirmed.
            body["serving"] = term.serving()
        store = term.store if term is not None else None
        if store is not None:
            rounds = term.group_commit.rounds if term.group_commit is not None else 0
            body["store"] = {"durableLsn": store.durable_lsn, "syncRounds": rounds,
                             "syncStrategy": self.config.persistence.journal_disk_sync_strategy}
        return body

    def _holder(self):
        if self.locker is None:
            return None
        try:
            return self.locker.holder()
        except Exception:  # the status page must answer even if the lock file is unreadable
            return None

    # ------------------------------------------------------------------ life cycle
    async def run(self) -> int:
        _raise_descriptor_limit()
        try:
            self.check_connectors()
        except ConnectorError as exc:
            log.error("%s", exc)
            return 2
        loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(signum, self.request_stop, signum)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - non-main thread
                pass
        if self.config.status_endpoint is not None:
            from hamq.status import StatusServer

            self.status_server = StatusServer(self.config.status_endpoint.host, self.config.status_endpoint.port,
                                              self.status)
            await self.status_server.start()
        try:
            while not self.stopping:
                ok = await self._master_term()
                if not ok and not self.stopping:
                    self.role = "starting"
                    await self._sleep_or_stop(RESTART_PAUSE_S)
        finally:
            self.role = "stopping"
            if self.status_server is not None:
                await self.status_server.close()
            self._executor.shutdown(wait=True)
        log.info("broker %s (%s) stopped", self.config.broker_name, self.config.node_name)
        return self.exit_code

    def request_stop(self, signum=None) -> None:
        if self.stopping:
            return
        log.info("received %s: stopping", signal.Signals(signum).name if signum else "stop request")
        self.stopping = True
        self.role = "stopping"
        self._stop_event.set()
        if self.term is not None:
            self.term.stop()

    async def _sleep_or_stop(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop_event.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _master_term(self) -> bool:
        """Wait for the lock, serve one master term until stop or failure. True on a clean stop."""
        lease = await self.acquire_lock()
        if lease is None:
            return self.stopping
        term = self.term = MasterTerm(self, lease, self._executor)
        if self.stopping:
            term.stop()
        try:
            await term.start()
            if term.failure is None and not self.stopping:
                self.role = "master"
                log.info("broker %s (%s) is master, epoch %s", self.config.broker_name, self.config.node_name,
                         term.epoch)
            await term.wait()
        except Exception as exc:
            if self.stopping and term.failure is None:
                log.info("startup interrupted by stop: %s", exc)
            elif term.failure is None:
                term.failure = f"{type(exc).__name__}: {exc}"
                log.error("master term failed: %s", term.failure, exc_info=not _is_expected(exc))
                if _is_fatal_startup(exc):
                    self.exit_code = 2
                    self.stopping = True
        finally:
            was_master = self.role == "master"
            if not self.stopping:
                self.role = "starting"
            await term.close()
            if was_master:
                log.info("master term ended (epoch %s)%s", term.epoch,
                         f": {term.failure}" if term.failure else "")
            self.term = None
        return term.failure is None

    def term_failed(self, term: MasterTerm) -> None:
        """A master term failed: exit non-zero once it has wound down (systemd restarts us as a slave)."""
        self.exit_code = 1
        self.stopping = True
        self.role = "stopping"
        # a hung store (hard-mounted NFS) must not keep a broker that lost mastership alive
        watchdog = threading.Timer(HALT_GRACE_S, _halt_now, (HALT_GRACE_S,))
        watchdog.daemon = True
        watchdog.start()

    async def acquire_lock(self):
        """Become master (blocks while another broker holds the lock); the lease, or None if stopped meanwhile."""
        from hamq.ha.lockers import load_locker

        identity = {
            "nodeName": self.config.node_name,
            "brokerName": self.config.broker_name,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        if self.status_server is not None:
            identity["statusUrl"] = f"http://{self.status_server.host}:{self.status_server.port}/status"
        directory = self.config.persistence.directory
        from hamq.ha.storage_safety import enforce

        # refuse unsafe storage before touching the lock (UnsafeStorageError is fatal: exit 2)
        enforce(str(directory), allow_unsafe=self.config.persistence.allow_unsafe_storage,
                logger=logging.getLogger("hamq.ha"))
        self.locker = load_locker(self.config.persistence.locker, directory, identity)

        def waiting(holder) -> None:
            self.role = "slave"
            # load now what a takeover needs, so that the takeover itself does not pay for imports
            import hamq.core.scheduler  # noqa: F401
            import hamq.core.selector  # noqa: F401
            import hamq.ha.scheduler_store  # noqa: F401
            import hamq.store  # noqa: F401

        acquire = asyncio.ensure_future(self.locker.acquire(on_waiting=waiting))
        stop = asyncio.ensure_future(self._stop_event.wait())
        done, _ = await asyncio.wait({acquire, stop}, return_when=asyncio.FIRST_COMPLETED)
        if acquire not in done:
            acquire.cancel()
            try:
                await acquire
            except BaseException:
                pass
            return None
        stop.cancel()
        self.role = "starting"
        return acquire.result()

    def check_connectors(self) -> None:
        """Refuse connectors we cannot serve before taking any lock: nothing starts on a bad config."""
        from hamq.security import config as security_config
        from hamq.security.tls import TLSSetupError, server_context

        security = getattr(self.config, "security", None)
        security_config.check_connectors(security, self.config.connectors,
                                         lambda _line, problem, fix: ConnectorError(f"{problem}. Fix: {fix}"), None)
        self.tls_contexts = {}
        for connector in self.config.connectors:
            if connector.scheme == "stomp+ssl":
                need = connector.options.get("needClientAuth", "false").strip().lower() == "true"
                try:
                    self.tls_contexts[connector.name] = server_context(security.tls, need)
                except TLSSetupError as exc:
                    raise ConnectorError(f"transport connector {connector.name!r}: {exc}") from None
            elif connector.scheme != "stomp":
                raise ConnectorError(
                    f"transport connector {connector.name!r} uses {connector.scheme}://, which this broker does "
                    "not serve. Fix: use a stomp:// or stomp+ssl:// uri")

def _raise_descriptor_limit() -> None:
    """Lift the soft RLIMIT_NOFILE to the hard one: every client connection costs a descriptor.

    A master refuses connections past the limit (keeping a reserve for the store
    and the lock, see hamq.protocol) rather than let a flood starve its own files.
    """
    import resource

    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as exc:
        log.warning("cannot raise the open-files limit: %s", exc)


def _halt_now(grace_s: float) -> None:
    log.critical("the master term did not wind down within %.0f s (storage hung?); exiting now", grace_s)
    logging.shutdown()
    os._exit(1)


def _is_expected(exc: BaseException) -> bool:
    from hamq.store import StoreError

    return isinstance(exc, (StoreError, OSError, RuntimeError, ConnectorError)) or type(exc).__name__ in (
        "LockerError", "LockedError", "UnsafeStorageError", "SchedulerStoreError")


def _is_fatal_startup(exc: BaseException) -> bool:
    """Errors that a retry cannot fix: exit instead of looping as a slave."""
    return type(exc).__name__ in ("LockerError", "LockedError", "UnsafeStorageError", "SchedulerStoreError",
                                  "ConnectorError") or (
        isinstance(exc, OSError) and exc.errno in (98, 13))  # EADDRINUSE, EACCES


# ---------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="broker.xml to run")
    parser.add_argument("--log-level", default=os.environ.get("HAMQ_LOG_LEVEL", "INFO"),
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="stderr log level (default INFO)")


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
                                           "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def main_run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    from hamq.config.errors import ConfigError
    from hamq.config.loader import load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"hamq run: {exc}", file=sys.stderr)
        return 2
    log.info("hamq %s starting broker %s (%s) from %s", __version__, config.broker_name, config.node_name,
             args.config)
    node = BrokerNode(config)
    return asyncio.run(node.run())
