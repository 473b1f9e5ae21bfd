"""``hamq run``: the asyncio shell around the sans-IO engine.

Start order (ActiveMQ's ``BrokerService``: locker, store, scheduler,
connectors last), each step a method so the HA parts hook in at one place::

    status endpoint up            role "starting"
    acquire the master lock       role "slave" while another broker holds it
    open the store (epoch)        replay the journal
    recover destinations
    start the scheduler
    open the STOMP connectors     role "master"

Losing the lock, a fence failure or a store I/O error ends the master term at
once: the connectors and every client connection close (so clients fail
over), nothing more is written, and the process exits with status 1 so that
its supervisor restarts it as a slave (a fresh process: no state of the lost
term survives).
SIGTERM/SIGINT stop it gracefully (role "stopping") with exit status 0.

Group commit: frames are handled on the event loop and their store batches
appended right away; ``hamq.group_commit`` schedules ``store.sync()`` once
per event-loop round while connections wait, so all producers that sent
meanwhile share one fsync. Outputs tagged ``after_lsn`` wait per connection,
in order, until the store is durable that far.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import itertools
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from typing import Deque, Dict, Optional, Set

from hamq import __version__
from hamq.core.engine import Broker, Output
from hamq.core.messages import MessageFrame
from hamq.group_commit import GroupCommit
from hamq.stomp.codec import FrameDecoder, ProtocolError, encode_frame

log = logging.getLogger("hamq.server")

#: Slow-reader protection: stop dispatching to (and reading from) a client
#: whose unsent output passes HIGH; resume below LOW.
WRITE_HIGH_WATER = 4 * 1024 * 1024
WRITE_LOW_WATER = 1 * 1024 * 1024
TICK_S = 0.1
#: How long a connection we close keeps draining the peer's input (see StompProtocol.linger).
LINGER_S = 2.0
#: Pause before waiting for the lock again after a master term ended badly.
RESTART_PAUSE_S = 1.0
#: After a failed master term, exit by force if the clean wind-down has not finished by then.
HALT_GRACE_S = 30.0

_conn_ids = itertools.count(1)


class ConnectorError(Exception):
    """A transport connector cannot be opened as configured; retrying will not help."""


class StompProtocol(asyncio.Protocol):
    """One client connection: bytes -> FrameDecoder -> Broker; outputs -> transport."""

    def __init__(self, node: "BrokerNode", connector):
        self.node = node
        self.connector = connector
        self.conn_id = next(_conn_ids)
        self.transport: Optional[asyncio.Transport] = None
        self.decoder = FrameDecoder(
            "1.0", connector.max_frame_size, connector.max_headers, connector.max_header_length
        )
        #: Outputs waiting for the store to become durable up to their after_lsn, in order.
        self.held: Deque[Output] = deque()
        self.closed = False
        #: Reading stops while the client's output backs up (write) or its SEND waits for room (flow).
        self.write_paused = False
        self.flow_paused = False

    # -- asyncio callbacks --------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        limit = getattr(self.connector, "max_connections", None)
        if limit is not None and self.node.connection_count(self.connector) >= limit:
            log.warning("refusing %s: maximumConnections=%d reached on connector %s", peer, limit,
                        self.connector.name)
            self.closed = True
            transport.abort()
            return
        high = getattr(self.connector, "max_pending_bytes", None) or WRITE_HIGH_WATER
        transport.set_write_buffer_limits(high=high, low=min(WRITE_LOW_WATER, high // 4))
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.node.protocols[self.conn_id] = self
        self.node.guard(self.node.broker.connection_made, self.conn_id, peer)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        node = self.node
        broker = node.broker
        if broker is None:
            return
        decoder = self.decoder
        decoder.feed(data)
        if self.flow_paused:
            return  # bytes already in flight when reading stopped: decoded on resume
        broker.touch(self.conn_id)
        try:
            while True:
                try:
                    event = decoder.next_event()
                except ProtocolError as exc:
                    broker.protocol_error(self.conn_id, exc)
                    if exc.fatal:
                        break
                    continue
                if event is None:
                    break
                broker.receive(self.conn_id, event)
                decoder.version = broker.version_of(self.conn_id)
                if broker.is_blocked(self.conn_id):
                    # Producer flow control: the rest stays undecoded, the socket unread.
                    self.flow_paused = True
                    self.transport.pause_reading()
                    break
        except Exception as exc:  # a store failure ends the master term
            node.fail(exc)
            return
        node.flush()

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.held.clear()
        if self.node.protocols.pop(self.conn_id, None) is not None:
            self.node.guard(self.node.broker.connection_lost, self.conn_id)
            self.node.flush()

    def pause_writing(self) -> None:
        self.write_paused = True
        self.node.guard(self.node.broker and self.node.broker.set_writable, self.conn_id, False)
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.node.guard(self.node.broker and self.node.broker.set_writable, self.conn_id, True)
        if self.transport is not None and not self.closed and not self.flow_paused:
            self.transport.resume_reading()
        self.node.flush()

    def flow_resume(self) -> None:
        """The held SEND went through: read again, starting with the bytes already buffered."""
        self.flow_paused = False
        if self.closed or self.transport is None:
            return
        if not self.write_paused:
            self.transport.resume_reading()
        asyncio.get_running_loop().call_soon(self.data_received, b"")

    # -- output -----------------------------------------------------------------------
    def release(self, durable_lsn: int) -> None:
        """Write every held output whose data is durable, stopping at the first that is not."""
        held = self.held
        chunks = []
        close = False
        while held:
            out = held[0]
            if out.after_lsn > durable_lsn:
                break
            held.popleft()
            if out.close:
                close = True
                held.clear()
                break
            frame = out.frame
            if frame is None:
                chunks.append(b"\n")
            elif type(frame) is MessageFrame:
                chunks.append(frame.encode(out.version))
            else:
                chunks.append(encode_frame(frame, out.version))
        if self.closed or self.transport is None:
            return
        if chunks:
            self.transport.write(b"".join(chunks))
        if close:
            self.closed = True
            self.linger()
            if self.node.protocols.pop(self.conn_id, None) is not None:
                self.node.guard(self.node.broker.connection_lost, self.conn_id)

    def linger(self) -> None:
        """Close gently: send FIN, keep discarding input for a moment, then close.

        Closing a socket with unread input makes the kernel send RST, and the
        peer may then lose the ERROR frame we just wrote.
        """
        transport = self.transport
        try:
            transport.resume_reading()
        except Exception:
            pass
        if transport.can_write_eof():
            transport.write_eof()
            asyncio.get_running_loop().call_later(LINGER_S, transport.close)
        else:
            transport.close()

    def abort(self) -> None:
        self.closed = True
        self.held.clear()
        if self.transport is not None:
            self.transport.abort()


class BrokerNode:
    """One broker process: roles, master terms, connections, group commit."""

    def __init__(self, config):
        self.config = config
        self.role = "starting"
        self.started_at = time.time()
        self.epoch: Optional[int] = None
        self.locker = None
        self.lease = None
        self.store = None
        self.broker: Optional[Broker] = None
        self.scheduler = None
        self.scheduler_store = None
        self._scheduler_lock_fd: Optional[int] = None
        self.protocols: Dict[int, StompProtocol] = {}
        self.listeners: list = []
        self.bound: list = []
        self.status_server = None
        self.stopping = False
        self._stop_event: Optional[asyncio.Event] = None
        self._term_over: Optional[asyncio.Event] = None
        #: Schedules the store syncs of this master term (see hamq.group_commit).
        self._group_commit: Optional[GroupCommit] = None
        #: The kahaDB directory is on a local file system (see hamq.group_commit).
        self._local_store = False
        self._term_failure: Optional[str] = None
        self._flush_scheduled = False
        self._waiting: Set[StompProtocol] = set()
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="hamq-sync")
        self._tasks: list = []
        self.exit_code = 0

    # ------------------------------------------------------------------ status
    @property
    def sync_rounds(self) -> int:
        """Group-commit rounds (store.sync calls) this master term, for /status."""
        return self._group_commit.rounds if self._group_commit is not None else 0

    def status(self) -> dict:
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
                           for c, h, p in self.bound],
            "destinations": [],
            "durableSubscriptions": [],
            "connections": 0,
            "blockedProducers": 0,
        }
        if self.broker is not None and self.role == "master":
            figures = self.broker.status()
            for key in ("destinations", "durableSubscriptions", "connections", "blockedProducers"):
                body[key] = figures[key]
        if self.store is not None:
            body["store"] = {"durableLsn": self.store.durable_lsn, "syncRounds": self.sync_rounds,
                             "syncStrategy": self.config.persistence.journal_disk_sync_strategy}
        return body

    def _holder(self):
        if self.locker is None:
            return None
        try:
            return self.locker.holder()
        except Exception:  # the status page must answer even if the lock file is unreadable
            return None

    def connection_count(self, connector) -> int:
        return sum(1 for p in self.protocols.values() if p.connector is connector)

    # ------------------------------------------------------------------ life cycle
    async def run(self) -> int:
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
        if self._term_over is not None:
            self._term_over.set()

    async def _sleep_or_stop(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop_event.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _master_term(self) -> bool:
        """Wait for the lock, serve as master until stop or failure. True on a clean stop."""
        self._term_over = asyncio.Event()
        self._term_failure = None
        try:
            if not await self.acquire_lock():
                return self.stopping
            self.open_store()
            self.recover()
            await self.start_scheduler()
            await self.open_connectors()
            self.role = "master"
            log.info("broker %s (%s) is master, epoch %s", self.config.broker_name, self.config.node_name,
                     self.epoch)
            self._group_commit = GroupCommit(
                asyncio.get_running_loop(), self.store.sync, self._executor, self._local_store,
                waiting=lambda: len(self._waiting), release=self._release, fail=self.fail,
            )
            self._tasks = [asyncio.ensure_future(self._tick_loop())]
            if self.lease is not None:
                self._tasks.append(asyncio.ensure_future(self.lease.keep_alive(self._lock_lost)))
            await self._term_over.wait()
        except Exception as exc:
            if self.stopping:
                log.info("startup interrupted by stop: %s", exc)
            else:
                self._term_failure = f"{type(exc).__name__}: {exc}"
                log.error("master term failed: %s", self._term_failure, exc_info=not _is_expected(exc))
                if _is_fatal_startup(exc):
                    self.exit_code = 2
                    self.stopping = True
        finally:
            await self._end_term()
        return self._term_failure is None

    async def acquire_lock(self) -> bool:
        """Become master (blocks while another broker holds the lock). False if stopped meanwhile."""
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
            return False
        stop.cancel()
        self.lease = acquire.result()
        self.epoch = self.lease.epoch
        self.role = "starting"
        return True

    def open_store(self) -> None:
        from hamq.store import MessageStore

        p = self.config.persistence
        # Preallocation spares a local fsync its size commit; on shared storage it would only make a
        # takeover read and trim the dead master's fill over the network, so it stays off there.
        self._local_store = self._store_is_local()
        self.store = MessageStore(
            str(p.directory),
            sync_strategy=p.journal_disk_sync_strategy,
            sync_interval_ms=p.journal_disk_sync_interval_ms,
            max_segment_bytes=p.journal_max_file_length,
            checkpoint_interval_ms=p.checkpoint_interval_ms,
            cleanup_interval_ms=p.cleanup_interval_ms,
            fence=self.lease.check_fence if self.lease is not None else None,
            preallocate=self._local_store,
        )
        started = time.monotonic()
        report = self.store.open(epoch=self.epoch or 0)
        log.info("store %s open in %.3f s: %s", p.directory, time.monotonic() - started, report)

    def _store_is_local(self) -> bool:
        try:
            from hamq.ha.storage_safety import LOCAL_FSTYPES, check_storage

            verdict = check_storage(str(self.config.persistence.directory))
            return verdict.mount is not None and verdict.mount.fstype in LOCAL_FSTYPES
        except Exception:  # unknown means shared: the safe choice
            return False

    def recover(self) -> None:
        port = self.config.connectors[0].port if self.config.connectors else 0
        self.broker = Broker(self.config, store=self.store, port=port)
        started = time.monotonic()
        self.broker.recover()
        log.info("recovered %d queues and %d durable subscriptions in %.3f s", len(self.broker.queues),
                 len(self.broker.durables), time.monotonic() - started)

    async def start_scheduler(self) -> None:
        """Scheduled delivery (``schedulerSupport``): its own locked store under <dataDirectory>/<brokerName>/scheduler."""
        if not self.config.scheduler_support:
            return
        from hamq.core.scheduler import Scheduler
        from hamq.ha.scheduler_store import open_scheduler_store

        identity = {"nodeName": self.config.node_name, "brokerName": self.config.broker_name,
                    "host": socket.gethostname(), "pid": os.getpid()}
        self.scheduler_store, self._scheduler_lock_fd = await open_scheduler_store(self.config, self.lease, identity)
        self.scheduler = Scheduler(self.scheduler_store, id_prefix=f"ID:{self.config.node_name}-job",
                                   deliver=self.broker.route)
        self.broker.scheduler = self.scheduler
        log.info("scheduler started in %s with %d jobs", self.config.scheduler_directory, len(self.scheduler))

    def check_connectors(self) -> None:
        """Refuse connectors we cannot serve before taking any lock: nothing starts on a bad config."""
        from hamq.security import config as security_config
        from hamq.security.tls import TLSSetupError, server_context

        security = getattr(self.config, "security", None)
        security_config.check_connectors(security, self.config.connectors,
                                         lambda _line, problem, fix: ConnectorError(f"{problem}. Fix: {fix}"), None)
        self._tls_contexts = {}
        for connector in self.config.connectors:
            if connector.scheme == "stomp+ssl":
                need = connector.options.get("needClientAuth", "false").strip().lower() == "true"
                try:
                    self._tls_contexts[connector.name] = server_context(security.tls, need)
                except TLSSetupError as exc:
                    raise ConnectorError(f"transport connector {connector.name!r}: {exc}") from None
            elif connector.scheme != "stomp":
                raise ConnectorError(
                    f"transport connector {connector.name!r} uses {connector.scheme}://, which this broker does "
                    "not serve. Fix: use a stomp:// or stomp+ssl:// uri")

    async def open_connectors(self) -> None:
        loop = asyncio.get_running_loop()
        self.bound = []
        for connector in self.config.connectors:
            server = await loop.create_server(
                lambda c=connector: StompProtocol(self, c), connector.host, connector.port, reuse_address=True,
                **_tls_options(getattr(self, "_tls_contexts", {}).get(connector.name), connector)
            )
            self.listeners.append(server)
            host, port = server.sockets[0].getsockname()[:2]
            self.bound.append((connector, host, port))
            log.info("connector %s listening on %s://%s:%d", connector.name, connector.scheme, host, port)

    async def _end_term(self) -> None:
        """Close connectors and clients first, then stop writing, then give the lock up."""
        was_master = self.role == "master"
        if not self.stopping:
            self.role = "starting"
        for server in self.listeners:
            server.close()
        self.listeners = []
        self.bound = []
        failed = self._term_failure is not None
        if not failed and self.broker is not None and self.store is not None:
            # Clean stop: let held receipts out once they are durable, then close.
            try:
                self.flush()
                durable = await asyncio.get_running_loop().run_in_executor(self._executor, self.store.sync)
                self._release(durable)
            except Exception as exc:
                log.warning("final sync failed: %s", exc)
        for proto in list(self.protocols.values()):
            if failed:
                proto.abort()
            elif proto.transport is not None:
                proto.closed = True
                proto.transport.close()
        self.protocols.clear()
        self._waiting.clear()
        if self._group_commit is not None:
            self._group_commit.close()
            self._group_commit = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except BaseException:
                pass
        self._tasks = []
        self.scheduler = None
        if self.scheduler_store is not None:
            sched_store, self.scheduler_store = self.scheduler_store, None
            try:
                await asyncio.get_running_loop().run_in_executor(self._executor, sched_store.close)
            except Exception as exc:
                log.warning("closing the scheduler store failed: %s", exc)
        if self._scheduler_lock_fd is not None:
            from hamq.ha.lockfile import unlock

            fd, self._scheduler_lock_fd = self._scheduler_lock_fd, None
            unlock(fd)
        if self.store is not None:
            store, self.store = self.store, None
            try:
                await asyncio.get_running_loop().run_in_executor(self._executor, store.close)
            except Exception as exc:
                log.warning("closing the store failed: %s", exc)
        self.broker = None
        if self.lease is not None:
            lease, self.lease = self.lease, None
            try:
                lease.release()
            except Exception as exc:
                log.warning("releasing the lock failed: %s", exc)
        if was_master:
            log.info("master term ended (epoch %s)%s", self.epoch,
                     f": {self._term_failure}" if failed else "")
        self.epoch = None

    def _lock_lost(self, reason: str) -> None:
        log.error("no longer able to keep the exclusive lock: %s; stopping the connectors and exiting "
                  "so that a supervisor restarts this broker as a slave", reason)
        self.fail(RuntimeError(f"lock lost: {reason}"))

    def fail(self, exc: BaseException) -> None:
        """End the master term now: a store error, a fence, a lost lock (DefaultIOExceptionHandler)."""
        if self._term_failure is None:
            self._term_failure = f"{type(exc).__name__}: {exc}"
            log.error("stopping the master term: %s", self._term_failure, exc_info=not _is_expected(exc))
            # stop listening now; then exit non-zero so that the supervisor (systemd Restart=always)
            # starts a fresh process, which waits as a slave
            for server in self.listeners:
                server.close()
            self.exit_code = 1
            self.stopping = True
            self.role = "stopping"
            # a hung store (hard-mounted NFS) must not keep a broker that lost mastership alive
            watchdog = threading.Timer(HALT_GRACE_S, _halt_now, (HALT_GRACE_S,))
            watchdog.daemon = True
            watchdog.start()
            for proto in list(self.protocols.values()):
                proto.abort()
            self.protocols.clear()
        if self._term_over is not None:
            self._term_over.set()

    def guard(self, func, *args) -> None:
        """Call into the broker; a store failure ends the term instead of escaping into asyncio."""
        if self.broker is None:
            return
        try:
            func(*args)
        except Exception as exc:
            self.fail(exc)

    # ------------------------------------------------------------------ output path
    def flush(self) -> None:
        """Route the broker's outputs to connections; write what is durable, hold the rest."""
        broker = self.broker
        if broker is None or self._term_failure is not None:
            return
        try:
            outputs = broker.take_outputs()
        except Exception as exc:
            self.fail(exc)
            return
        store = self.store
        durable = store.durable_lsn if store is not None else 0
        touched = set()
        protocols = self.protocols
        for conn_id in broker.take_resumed():
            proto = protocols.get(conn_id)
            if proto is not None:
                proto.flow_resume()
        for out in outputs:
            proto = protocols.get(out.conn_id)
            if proto is None:
                continue
            proto.held.append(out)
            touched.add(proto)
        for proto in touched:
            proto.release(durable)
            if proto.held:
                self._waiting.add(proto)
        if self._waiting and self._group_commit is not None:
            self._group_commit.wanted()
        if broker.has_work() and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def _release(self, durable: int) -> int:
        """Write what became durable; returns how many connections got their outputs."""
        released = 0
        for proto in list(self._waiting):
            proto.release(durable)
            if not proto.held or proto.closed:
                self._waiting.discard(proto)
                released += 1
        return released

    async def _tick_loop(self) -> None:
        store = self.store
        while True:
            await asyncio.sleep(TICK_S)
            now = time.time()
            try:
                self.broker.tick(now)
                if store is not None:
                    store.maybe_checkpoint()
                    store.maybe_cleanup()
                if self.scheduler_store is not None:
                    self.scheduler_store.maybe_checkpoint()
                    self.scheduler_store.maybe_cleanup()
            except Exception as exc:
                self.fail(exc)
                return
            if store is not None and store.written_lsn > store.durable_lsn:
                self._group_commit.wanted()  # unreceipted writes too become durable within a tick
            self.flush()


def _tls_options(context, connector) -> dict:
    """create_server arguments for a TLS connector: a handshake gets no longer than a CONNECT would."""
    if context is None:
        return {}
    raw = connector.options.get("connectAttemptTimeout")
    timeout = int(raw) / 1000.0 if raw else 30.0
    return {"ssl": context, "ssl_handshake_timeout": timeout}


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
