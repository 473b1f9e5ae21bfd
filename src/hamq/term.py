"""One master term: everything that exists only while this broker is master, built whole and thrown away whole.

A term is built when the broker wins the lock and holds the lease, the store,
the engine with its durability tracker, the scheduler, the group commit, the
client connections, the listeners and the background tasks. When the term
ends (a clean stop, a lost lock, a fence, a store error) all of it goes at
once; the next term, in this process or another, starts from the disk, so
nothing of an old term can leak into a new one.

Serving is gated by the lease (:meth:`MasterTerm.serving`): the term reads no
frame, releases no output and starts no fsync unless the lease is valid, that
is its last good keep-alive probe is recent and no pause has cast doubt on it
since. The term notices pauses itself: a beat every ``BEAT_S`` records the
monotonic clock, and any gap longer than the keep-alive period (seen by the
beat or by the next frame, whichever runs first after the pause) makes the
lease doubt itself until a fresh probe confirms the lock (or finds it lost,
which ends the term).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import resource
import time
from typing import TYPE_CHECKING, Dict, Optional, Set

from hamq.core.engine import Broker
from hamq.group_commit import GroupCommit
from hamq.protocol import DESCRIPTOR_RESERVE, StompProtocol

if TYPE_CHECKING:  # pragma: no cover
    from hamq.server import BrokerNode

log = logging.getLogger("hamq.server")

TICK_S = 0.1
#: The pause detector's beat.
BEAT_S = 0.05
#: A warning about refused connections is logged at most this often.
COMPLAINT_EVERY_S = 5.0


class MasterTerm:
    """One mastership of one broker process; see the module docstring."""

    def __init__(self, node: "BrokerNode", lease, executor: concurrent.futures.Executor):
        self.node = node
        self.config = node.config
        self.lease = lease
        self.epoch = lease.epoch if lease is not None else 0
        self._executor = executor  # store syncs on shared storage, store open/close
        self._checkpoint_executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="hamq-checkpoint")
        self.store = None
        self.broker: Optional[Broker] = None
        self.group_commit: Optional[GroupCommit] = None
        self.local_store = False
        self.protocols: Dict[int, StompProtocol] = {}
        #: Connections that stopped reading while the lease was in doubt.
        self.gated: Set[StompProtocol] = set()
        self.listeners: list = []
        self.bound: list = []
        self.tasks: list = []
        self.failure: Optional[str] = None
        self.closing = False
        self._over = asyncio.Event()
        self._flush_scheduled = False
        self._checkpointing = False
        self._baseline_fds = 0
        self._last_complaint = float("-inf")
        self._beat_handle: Optional[asyncio.TimerHandle] = None
        self._last_beat = time.monotonic()
        period = getattr(lease, "keep_alive_period_s", None)
        #: A gap in the event loop longer than this casts doubt on the lease.
        self.pause_limit_s = period if period else float("inf")

    @property
    def over(self) -> bool:
        """No new connection, no new work: the term is ending or ended."""
        return self.closing or self.failure is not None

    # ------------------------------------------------------------------ start
    async def start(self) -> None:
        """Open the store, recover, start the scheduler, open the connectors, start the tasks."""
        loop = asyncio.get_running_loop()
        self._open_store_object()
        started = time.monotonic()
        report = await loop.run_in_executor(self._executor, self.store.open, self.epoch)
        log.info("store %s open in %.3f s: %s", self.config.persistence.directory, time.monotonic() - started,
                 report)
        await self._migrate_scheduler_store()
        self._recover()
        self.group_commit = GroupCommit(
            loop, self.store.sync, self._executor, self.local_store,
            waiting=self.broker.durability.waiting, release=self._release_durable, fail=self.fail,
            gate=self.serving,
        )
        self.broker.durability.gate = self.serving
        if self.lease is not None:
            self.lease.on_valid = self._lease_confirmed
            self.tasks.append(asyncio.ensure_future(self.lease.keep_alive(self._lock_lost)))
        self.tasks.append(asyncio.ensure_future(self._tick_loop()))
        self._last_beat = time.monotonic()
        self._beat_handle = loop.call_later(BEAT_S, self._beat)
        self._baseline_fds = _open_descriptors()
        await self._open_connectors()

    def _open_store_object(self) -> None:
        from hamq.store import MessageStore

        p = self.config.persistence
        # Preallocation spares a local fsync its size commit; on shared storage it would only make a
        # takeover read and trim the dead master's fill over the network, so it stays off there.
        self.local_store = _store_is_local(str(p.directory))
        self.store = MessageStore(
            str(p.directory),
            sync_strategy=p.journal_disk_sync_strategy,
            sync_interval_ms=p.journal_disk_sync_interval_ms,
            max_segment_bytes=p.journal_max_file_length,
            checkpoint_interval_ms=p.checkpoint_interval_ms,
            checkpoint_journal_bytes=p.checkpoint_journal_bytes,
            cleanup_interval_ms=p.cleanup_interval_ms,
            fence=self.lease.check_fence if self.lease is not None else None,
            preallocate=self.local_store,
        )

    def _recover(self) -> None:
        port = self.config.connectors[0].port if self.config.connectors else 0
        self.broker = Broker(self.config, store=self.store, port=port)
        started = time.monotonic()
        self.broker.recover()
        log.info("recovered %d queues, %d durable subscriptions and %d scheduled jobs in %.3f s",
                 len(self.broker.queues), len(self.broker.durables),
                 len(self.broker.scheduler) if self.broker.scheduler is not None else 0, time.monotonic() - started)

    async def _migrate_scheduler_store(self) -> None:
        """Jobs of a pre-1.1 scheduler store move into the journal once (see hamq.ha.scheduler_store)."""
        if not self.config.scheduler_support:
            return
        from hamq.ha.scheduler_store import migrate

        await asyncio.get_running_loop().run_in_executor(self._executor, migrate, self.config, self.store,
                                                         self.lease)

    async def _open_connectors(self) -> None:
        loop = asyncio.get_running_loop()
        contexts = getattr(self.node, "tls_contexts", {})
        for connector in self.config.connectors:
            server = await loop.create_server(
                lambda c=connector: StompProtocol(self, c), connector.host, connector.port, reuse_address=True,
                **_tls_options(contexts.get(connector.name), connector)
            )
            self.listeners.append(server)
            host, port = server.sockets[0].getsockname()[:2]
            self.bound.append((connector, host, port))
            log.info("connector %s listening on %s://%s:%d", connector.name, connector.scheme, host, port)

    # ------------------------------------------------------------------ serving
    async def wait(self) -> None:
        """Until the term is asked to stop or fails."""
        await self._over.wait()

    def serving(self) -> bool:
        """May the term read a frame, release an output or start an fsync right now?"""
        if self.failure is not None:
            return False
        lease = self.lease
        if lease is None:
            return True
        gap = time.monotonic() - self._last_beat
        if gap > self.pause_limit_s:
            self._paused(gap)  # noticed here before the beat timer could run after the pause
        return lease.serving()

    def _beat(self) -> None:
        gap = time.monotonic() - self._last_beat
        if gap > self.pause_limit_s:
            self._paused(gap)
        self._last_beat = time.monotonic()
        if self.failure is None:
            self._beat_handle = asyncio.get_running_loop().call_later(BEAT_S, self._beat)

    def _paused(self, gap: float) -> None:
        self._last_beat = time.monotonic()
        self.lease.doubt("the event loop stood still for %.3f s (longer than the keep-alive period of %.3f s)"
                         % (gap, self.pause_limit_s))

    def _lease_confirmed(self) -> None:
        """A doubt is over: read the paused connections again and release what is durable."""
        if self.failure is not None or self.broker is None:
            return
        gated, self.gated = self.gated, set()
        for proto in gated:
            proto.gate_resume()
        self._release_durable(self.store.durable_lsn)
        if self.group_commit is not None:
            self.group_commit.wanted()
        self.flush()

    def descriptor_budget(self) -> int:
        """How many client connections fit below the descriptor limit, keeping DESCRIPTOR_RESERVE free."""
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return 1 << 30
        return max(0, soft - self._baseline_fds - DESCRIPTOR_RESERVE)

    def complain(self, text: str) -> None:
        """A warning that a flood of events would repeat: at most one line every few seconds."""
        now = time.monotonic()
        if now - self._last_complaint >= COMPLAINT_EVERY_S:
            self._last_complaint = now
            log.warning("%s", text)

    def connection_count(self, connector) -> int:
        return sum(1 for p in self.protocols.values() if p.connector is connector)

    def guard(self, func, *args) -> None:
        """Call into the engine; a store failure ends the term instead of escaping into asyncio."""
        if self.broker is None:
            return
        try:
            func(*args)
        except Exception as exc:
            self.fail(exc)

    def connection_gone(self, conn_id) -> None:
        broker = self.broker
        if broker is None:
            return
        broker.durability.forget(conn_id)
        self.guard(broker.connection_lost, conn_id)
        self.flush()

    # ------------------------------------------------------------------ output path
    def flush(self) -> None:
        """Hand the engine's outputs to the tracker; write what it releases; ask for an fsync if held."""
        broker = self.broker
        if broker is None or self.failure is not None:
            return
        try:
            outputs = broker.take_outputs()
        except Exception as exc:
            self.fail(exc)
            return
        protocols = self.protocols
        for conn_id in broker.take_resumed():
            proto = protocols.get(conn_id)
            if proto is not None:
                proto.flow_resume()
        tracker = broker.durability
        if outputs:
            touched = {out.conn_id for out in outputs if out.conn_id in protocols}
            tracker.hold(out for out in outputs if out.conn_id in touched)
            self._write(tracker.release(self.store.durable_lsn, touched))
        if tracker.waiting() and self.group_commit is not None:
            self.group_commit.wanted()
        if (broker.has_work() or tracker.pending_effects()) and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def _release_durable(self, durable: int) -> int:
        """The store is durable up to ``durable``: write what that releases; how many connections got some."""
        if self.broker is None:
            return 0
        tracker = self.broker.durability
        released = tracker.release(durable)
        self._write(released)
        if tracker.pending_effects() and not self._flush_scheduled:
            # the acks of auto-acked deliveries just written go in a batch of their own soon
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_flush)
        return len(released)

    def _write(self, released) -> None:
        """Hand released outputs to their connections, asking the gate again before each one.

        A freeze (SIGSTOP, a stalled VM) after :meth:`DurabilityTracker.release`
        asked the gate would otherwise let these bytes out after the resume,
        maybe after another broker took over; the pause detector in
        :meth:`serving` sees the gap, and what is left waits for the lease.
        """
        protocols = self.protocols
        tracker = self.broker.durability
        for conn_id, outputs in released:
            proto = protocols.get(conn_id)
            if proto is None:
                continue
            if not self.serving():
                tracker.unrelease(conn_id, outputs)
                continue
            proto.write(outputs)
            tracker.released(outputs)

    # ------------------------------------------------------------------ background work
    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            if not self.serving():
                continue  # the keep-alive confirms the lock (or ends the term) first
            store = self.store
            try:
                self.broker.tick(time.time())
                self._maybe_checkpoint()
                store.maybe_cleanup()
            except Exception as exc:
                self.fail(exc)
                return
            if store.written_lsn > store.durable_lsn:
                self.group_commit.wanted()  # unreceipted writes too become durable within a tick
            self.flush()

    def _maybe_checkpoint(self) -> None:
        """Snapshot the index on the event loop; write it (fsync, fence, rename) in the checkpoint thread."""
        if self._checkpointing:
            return
        snapshot = self.store.maybe_snapshot_checkpoint()
        if snapshot is None:
            return
        self._checkpointing = True
        future = asyncio.get_running_loop().run_in_executor(
            self._checkpoint_executor, self.store.write_checkpoint, snapshot)
        future.add_done_callback(self._checkpoint_done)

    def _checkpoint_done(self, future: asyncio.Future) -> None:
        self._checkpointing = False
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self.fail(exc)

    # ------------------------------------------------------------------ ending
    def _lock_lost(self, reason: str) -> None:
        log.error("no longer able to keep the exclusive lock: %s; stopping the connectors and exiting "
                  "so that a supervisor restarts this broker as a slave", reason)
        self.fail(RuntimeError(f"lock lost: {reason}"))

    def stop(self) -> None:
        """A clean stop was asked for: :meth:`wait` returns, then :meth:`close` winds the term down."""
        self._over.set()

    def fail(self, exc: BaseException) -> None:
        """End the term now: a store error, a fence, a lost lock (ActiveMQ's DefaultIOExceptionHandler).

        Nothing more is read, released or written: listeners and client
        connections close at once, so clients fail over; the process then exits
        non-zero and its supervisor starts a fresh one, which waits as a slave.
        """
        if self.failure is None:
            self.failure = f"{type(exc).__name__}: {exc}"
            log.error("stopping the master term: %s", self.failure, exc_info=not _is_expected(exc))
            for server in self.listeners:
                server.close()
            for proto in list(self.protocols.values()):
                proto.abort()
            self.protocols.clear()
            self.gated.clear()
            if self.group_commit is not None:
                self.group_commit.close()
            self.node.term_failed(self)
        self._over.set()

    async def close(self) -> None:
        """Close connectors and clients first, then stop writing, then give the lock up."""
        loop = asyncio.get_running_loop()
        self.closing = True
        if self._beat_handle is not None:
            self._beat_handle.cancel()
        for server in self.listeners:
            server.close()
        self.listeners = []
        self.bound = []
        failed = self.failure is not None
        if not failed and self.broker is not None and self.store is not None:
            # Clean stop: let held receipts out once they are durable, then close.
            try:
                self.flush()
                durable = await loop.run_in_executor(self._executor, self.store.sync)
                self._release_durable(durable)
                self.broker.durability.end_round()  # the acks of auto-acked deliveries just written
            except Exception as exc:
                log.warning("final sync failed: %s", exc)
        for proto in list(self.protocols.values()):
            if failed:
                proto.abort()
            elif proto.transport is not None:
                proto.closed = True
                proto.transport.close()
        self.protocols.clear()
        self.gated.clear()
        self.broker = None  # late connection_lost callbacks find nothing to do
        if self.group_commit is not None:
            self.group_commit.close()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            try:
                await task
            except BaseException:
                pass
        self.tasks = []
        await loop.run_in_executor(None, self._checkpoint_executor.shutdown, True)
        if self.store is not None:
            store, self.store = self.store, None
            try:
                await loop.run_in_executor(self._executor, lambda: store.close(checkpoint=not failed))
            except Exception as exc:
                log.warning("closing the store failed: %s", exc)
        if self.lease is not None:
            lease, self.lease = self.lease, None
            try:
                lease.release()
            except Exception as exc:
                log.warning("releasing the lock failed: %s", exc)


def _open_descriptors() -> int:
    """File descriptors this process has open (the store, the lock, the loop, the status endpoint)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 64


def _store_is_local(directory: str) -> bool:
    try:
        from hamq.ha.storage_safety import LOCAL_FSTYPES, check_storage

        verdict = check_storage(directory)
        return verdict.mount is not None and verdict.mount.fstype in LOCAL_FSTYPES
    except Exception:  # unknown means shared: the safe choice
        return False


def _tls_options(context, connector) -> dict:
    """create_server arguments for a TLS connector: a handshake gets no longer than a CONNECT would."""
    if context is None:
        return {}
    raw = connector.options.get("connectAttemptTimeout")
    timeout = int(raw) / 1000.0 if raw else 30.0
    return {"ssl": context, "ssl_handshake_timeout": timeout}


def _is_expected(exc: BaseException) -> bool:
    from hamq.store import StoreError

    return isinstance(exc, (StoreError, OSError, RuntimeError)) or type(exc).__name__ in (
        "LockerError", "LockedError", "UnsafeStorageError", "SchedulerStoreError", "ConnectorError")
