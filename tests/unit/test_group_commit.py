"""Group commit scheduling (hamq.group_commit) on a real event loop, with a store that counts syncs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import pytest

from hamq.group_commit import GROUP_WAIT_MAX_S, GroupCommit


class Store:
    """written/durable lsns like MessageStore; sync() records where and when it ran."""

    def __init__(self, sync_s: float = 0.0, error: Exception | None = None):
        self.written = 0
        self.durable = 0
        self.sync_s = sync_s
        self.error = error
        self.syncs: list = []  # (thread name, lsn made durable)

    def append(self) -> int:
        self.written += 1
        return self.written

    def sync(self) -> int:
        target = self.written
        if self.sync_s:
            time.sleep(self.sync_s)
        if self.error is not None:
            raise self.error
        self.syncs.append((threading.current_thread().name, target))
        self.durable = max(self.durable, target)
        return self.durable


class Server:
    """The server's side: connections wait for an lsn; release answers the durable ones."""

    def __init__(self, store: Store, inline_ok: bool = True):
        self.store = store
        self.waiting: dict = {}  # connection -> lsn it waits for
        self.answered: list = []  # (connection, lsn) in answer order
        self.failures: list = []
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync")
        self.gc = GroupCommit(asyncio.get_running_loop(), store.sync, self.executor, inline_ok,
                              waiting=lambda: len(self.waiting), release=self.release, fail=self.failures.append)

    def send(self, conn: str) -> None:
        """A persistent SEND from ``conn``: appended now, receipted once durable."""
        self.waiting[conn] = self.store.append()
        self.gc.wanted()

    def release(self, durable: int) -> int:
        done = [c for c, lsn in self.waiting.items() if lsn <= durable]
        for conn in done:
            self.answered.append((conn, self.waiting.pop(conn)))
        return len(done)

    async def settle(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.waiting and not self.failures:
            assert time.monotonic() < deadline, f"still waiting: {self.waiting}"
            await asyncio.sleep(0.001)


def run(coro):
    return asyncio.run(coro)


async def three_answered(inline_ok: bool) -> Server:
    """A server whose last sync answered a, b and c together (one fsync of 4 ms)."""
    server = Server(Store(sync_s=0.004), inline_ok=inline_ok)
    for conn in "abc":
        server.send(conn)
    await server.settle()
    return server


def test_sends_of_one_loop_round_share_one_sync():
    async def main():
        server = Server(Store(), inline_ok=False)
        for i in range(8):
            server.send(f"p{i}")
        await server.settle()
        assert server.gc.rounds == 1 and len(server.store.syncs) == 1
        assert sorted(c for c, _ in server.answered) == [f"p{i}" for i in range(8)]

    run(main())


def test_on_a_local_store_every_sync_runs_on_the_event_loop():
    async def main():
        server = Server(Store(), inline_ok=True)
        for _ in range(3):
            server.send("p")
            await server.settle()
        for conn in "abc":
            server.send(conn)
        await server.settle()
        assert [name for name, _ in server.store.syncs] == [threading.current_thread().name] * 4
        assert [lsn for _, lsn in server.store.syncs] == [1, 2, 3, 6]  # a, b and c shared one

    run(main())


def test_shared_storage_always_syncs_in_the_worker_thread():
    async def main():
        server = Server(Store(), inline_ok=False)
        server.send("p")
        await server.settle()
        assert server.store.syncs[0][0].startswith("sync")

    run(main())


def test_sends_during_a_running_sync_get_the_next_one():
    async def main():
        server = Server(Store(sync_s=0.05), inline_ok=False)
        server.send("a")
        await asyncio.sleep(0.01)  # the first sync is running in the worker now
        server.send("b")
        server.send("c")
        await server.settle()
        assert [lsn for _, lsn in server.store.syncs] == [1, 3]  # b and c shared the second fsync
        assert [c for c, _ in server.answered] == ["a", "b", "c"]

    run(main())


def test_after_answering_several_the_next_sync_waits_briefly_for_them_to_return():
    async def main():
        server = await three_answered(inline_ok=False)
        assert server.gc.rounds == 1
        server.send("a")  # only one of the three is back: wait for the others
        await asyncio.sleep(0)
        server.send("b")
        server.send("c")  # all three back: the sync goes without waiting out the timer
        await server.settle()
        assert server.gc.rounds == 2 and [lsn for _, lsn in server.store.syncs] == [3, 6]

    run(main())


def test_the_group_wait_is_bounded_when_the_others_do_not_return():
    async def main():
        server = await three_answered(inline_ok=False)
        started = time.monotonic()
        server.send("a")
        await server.settle()
        assert time.monotonic() - started < GROUP_WAIT_MAX_S + 1.0  # generous: a loaded CI host
        assert server.gc.rounds == 2

    run(main())


def test_on_a_local_store_the_next_sync_does_not_wait_for_the_others():
    async def main():
        server = await three_answered(inline_ok=True)
        server.send("a")
        await asyncio.sleep(0)  # one loop round: the sync has run, without waiting for b and c
        await asyncio.sleep(0)
        assert server.gc.rounds == 2 and server.answered[-1] == ("a", 4)

    run(main())


@pytest.mark.parametrize("inline_ok", [True, False])
def test_a_failed_sync_ends_the_term_and_answers_nothing(inline_ok):
    async def main():
        server = Server(Store(error=OSError(5, "Input/output error")), inline_ok=inline_ok)
        server.send("p")
        await server.settle()
        assert len(server.failures) == 1 and "Input/output error" in str(server.failures[0])
        assert server.answered == [] and "p" in server.waiting

    run(main())


def test_after_close_nothing_is_synced():
    async def main():
        server = Server(Store(), inline_ok=True)
        server.send("p")
        server.gc.close()
        await asyncio.sleep(0.05)
        server.send("q")
        await asyncio.sleep(0.05)
        assert server.store.syncs == [] and server.answered == []

    run(main())


@pytest.mark.parametrize("inline_ok", [True, False])
def test_no_sync_starts_while_the_gate_is_closed(inline_ok):
    """A master whose lease is in doubt (a pause) must not write a byte until its lock is confirmed."""

    async def main():
        server = Server(Store(), inline_ok=inline_ok)
        serving = [False]
        server.gc._gate = lambda: serving[0]
        server.send("a")
        await asyncio.sleep(0.05)
        assert server.store.syncs == [] and server.waiting == {"a": 1}
        serving[0] = True
        server.gc.wanted()  # what the master term does once the lease is confirmed
        await server.settle()
        assert server.answered == [("a", 1)] and len(server.store.syncs) == 1

    run(main())
