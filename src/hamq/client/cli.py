"""``hamq produce`` and ``hamq consume``: load and drain a destination through a failover URL.

They exist for failover drills: each prints one JSON summary line on stdout
(counts, duplicates, reconnects, outage) that a script or test can check, and
can write per-second samples for a report. Every message carries its sequence
number (header ``hamq-seq``) so a drain can tell exactly what is missing.

A drain counts messages by the producer's identity: the ``client-message-id``
the broker copies from the SEND's ``message-id``, else the producer's run and
sequence headers. Never by the MESSAGE's ``message-id``: the broker assigns
that one, so a message stored twice has two of them.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
from typing import Callable, Optional, Tuple

from hamq.client.errors import SendInDoubt
from hamq.client.failover import ACK_MODES, ClientError, FailoverClient
from hamq.client.pacing import Pacer
from hamq.client.url import FailoverURLError, parse_url
from hamq.stomp.headers import CLIENT_MESSAGE_ID

SEQ_HEADER = "hamq-seq"
RUN_HEADER = "hamq-run"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument(
        "url", metavar="URL", help="failover:(tcp://h1:61613,tcp://h2:61613)?options or tcp://h:port"
    )
    parser.add_argument("destination", metavar="DESTINATION", help="e.g. /queue/orders")
    parser.add_argument("--login", help="STOMP login")
    parser.add_argument("--passcode", default=os.environ.get("HAMQ_PASSCODE"),
                        help="STOMP passcode (default: $HAMQ_PASSCODE; the environment is not visible in ps)")
    parser.add_argument("--vhost", help="CONNECT host header (default: the host of the broker URI)")
    parser.add_argument(
        "--rate-log", metavar="FILE", help="write per-second samples (JSON lines: t, count, rate)"
    )
    if name == "produce":
        parser.add_argument("--count", type=_positive, required=True, help="messages to send")
        parser.add_argument(
            "--size", type=_non_negative, default=100, help="body size in bytes (default 100)"
        )
        parser.add_argument(
            "--persistent", action="store_true", help="send persistent messages (resent after failover)"
        )
        parser.add_argument(
            "--window", type=_positive, default=1, help="receipted sends in flight (default 1: synchronous)"
        )
        parser.add_argument(
            "--rate",
            type=_non_negative,
            default=0,
            help="at most this many sends per second (default 0: as fast as the broker receipts)",
        )
    else:
        parser.add_argument("--count", type=_positive, help="stop after this many messages")
        parser.add_argument(
            "--ack",
            choices=ACK_MODES,
            default="client-individual",
            help="ack mode (default client-individual)",
        )
        parser.add_argument(
            "--timeout",
            type=_seconds,
            default=10.0,
            help="stop after this many seconds connected without a message (default 10)",
        )
        parser.add_argument(
            "--expect",
            type=_non_negative,
            help="report which of hamq-seq 0..N-1 never arrived (missing) instead of gaps up to the highest seen",
        )
        parser.add_argument("--prefetch", type=_positive, help="activemq.prefetchSize for the subscription")


class _Meter:
    """Samples a counter once a second for ``--rate-log`` and the live progress line."""

    def __init__(self, read: Callable[[], int], describe: Callable[[], str], rate_log: Optional[str]):
        self._read = read
        self._describe = describe
        self._file = open(rate_log, "w", encoding="utf-8") if rate_log else None
        self._tty = sys.stderr.isatty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hamq-meter", daemon=True)
        self._start = time.time()

    def __enter__(self) -> "_Meter":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(time.time())
        if self._file:
            self._file.close()
        if self._tty:
            sys.stderr.write("\n")

    _last = 0
    _last_t: Optional[float] = None

    def _sample(self, now: float) -> None:
        count = self._read()
        since = now - (self._last_t if self._last_t is not None else self._start)
        if self._file:
            rate = round((count - self._last) / since, 1) if since > 0 else 0.0
            self._file.write(json.dumps({"t": round(now, 3), "count": count, "rate": rate}) + "\n")
            self._file.flush()
        self._last, self._last_t = count, now
        if self._tty:
            sys.stderr.write(f"\r{self._describe()}   ")
            sys.stderr.flush()

    def _run(self) -> None:
        next_at = self._start + 1.0
        while not self._stop.wait(max(0.0, next_at - time.time())):
            self._sample(time.time())
            next_at += 1.0


def producer_identity(headers: dict) -> Tuple[Optional[str], Optional[str]]:
    """(identity, what it is) of a delivered message as its producer named it; (None, None) if unknown."""
    client_id = headers.get(CLIENT_MESSAGE_ID)
    if client_id:
        return client_id, CLIENT_MESSAGE_ID
    seq = headers.get(SEQ_HEADER)
    if seq is not None and seq.isdigit():
        return f"{headers.get(RUN_HEADER, '')}:{seq}", SEQ_HEADER
    return None, None


class DrainTally:
    """Counts a drain: distinct messages, real duplicates, flagged redeliveries, missing seqs.

    Messages are told apart by the producer's identity (:func:`producer_identity`).
    A repeated identity is a duplicate only without ``redelivered:true``:
    with the flag it is the broker honestly redelivering a message whose ack
    died with the old master. A message without an identity cannot be checked
    either way; it is counted in ``unidentified`` and nowhere else.
    """

    def __init__(self) -> None:
        self.seen: set = set()
        self.seqs: set = set()
        self.received = self.deliveries = self.duplicates = 0
        self.redelivered = self.redelivered_repeats = 0
        self.unidentified = 0
        self.sources: collections.Counter = collections.Counter()
        self.first: Optional[float] = None
        self.last: Optional[float] = None

    def add(
        self, identity: Optional[str], redelivered: bool, seq: Optional[str], now: float,
        source: str = CLIENT_MESSAGE_ID,
    ) -> None:
        self.deliveries += 1
        self.redelivered += redelivered
        if identity is None:
            self.unidentified += 1
            return
        self.sources[source] += 1
        if identity in self.seen:
            if redelivered:
                self.redelivered_repeats += 1
            else:
                self.duplicates += 1
        else:
            self.seen.add(identity)
            self.received += 1
            self.last = now
            if self.first is None:
                self.first = now
        if seq is not None and seq.isdigit():
            self.seqs.add(int(seq))

    def missing(self, expect: Optional[int] = None) -> list:
        """``hamq-seq`` values never seen in ``0..expect-1`` (default: up to the highest seen)."""
        upto = expect if expect is not None else (max(self.seqs) + 1 if self.seqs else 0)
        return [s for s in range(upto) if s not in self.seqs]

    def summary(self, expect: Optional[int] = None) -> dict:
        missing = self.missing(expect)
        return {
            "identity": "+".join(sorted(self.sources)) or None,
            "identity_counts": dict(self.sources),
            "received": self.received,
            "deliveries": self.deliveries,
            "duplicates": self.duplicates,
            "unidentified": self.unidentified,
            "redelivered_repeats": self.redelivered_repeats,
            "redelivered": self.redelivered,
            "missing": len(missing),
            "missing_seqs": missing[:100],
            "msgs_per_sec": _rate(self.received, self.first, self.last),
            "first": self.first,
            "last": self.last,
        }


def _reconnect_summary(client: FailoverClient) -> dict:
    events = [e.as_dict() for e in client.reconnect_events]
    return {
        "reconnects": len(events),
        "outage_seconds": round(sum(e["outage_seconds"] or 0.0 for e in events), 3),
        "reconnect_events": events,
    }


def _rate(count: int, first: Optional[float], last: Optional[float]) -> float:
    if first is None or last is None or last <= first:
        return 0.0
    return round(count / (last - first), 1)


@contextlib.contextmanager
def _failover_log(command: str):
    """Lost/reconnected lines on stderr while a command runs: the operator (and a drill script) sees each failover."""
    logger = logging.getLogger("hamq.client")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"hamq {command}: %(message)s"))
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _client(args, **kwargs) -> FailoverClient:
    return FailoverClient(
        parse_url(args.url), login=args.login, passcode=args.passcode, vhost=args.vhost, **kwargs
    )


def _send_all(client: FailoverClient, args, run_id: str, progress: dict) -> None:
    """Send seq 0..count-1 and flush; ``progress`` counts distinct sends and in-doubt resends.

    The client resends persistent messages itself. A non-persistent one cut off
    by a failover raises SendInDoubt; it is sent again with the same message-id
    (at-least-once, as a careful application would).
    """
    prefix = f"ID:{socket.gethostname()}-{os.getpid()}-{run_id}"
    todo = collections.deque(range(args.count))
    pacer = Pacer(args.rate)

    def in_doubt(exc: SendInDoubt) -> int:
        progress["resent_in_doubt"] += 1
        return int(exc.message_id.rsplit(":", 1)[1])

    while True:
        while todo:
            seq = todo.popleft()
            lead = f"seq={seq} ".encode()
            body = (lead + b"x" * max(0, args.size - len(lead)))[: max(args.size, len(lead))]
            mid = f"{prefix}:{seq}"
            pacer.wait()
            try:
                client.send(
                    args.destination,
                    body,
                    headers={SEQ_HEADER: str(seq), RUN_HEADER: run_id},
                    persistent=args.persistent,
                    message_id=mid,
                )
                progress["sent"] = max(progress["sent"], seq + 1)
            except SendInDoubt as exc:
                if exc.message_id == mid:
                    progress["sent"] = max(progress["sent"], seq + 1)
                else:
                    todo.appendleft(seq)  # an earlier send's error, raised before this one went out
                todo.appendleft(in_doubt(exc))
        try:
            client.flush()
            return
        except SendInDoubt as exc:
            todo.append(in_doubt(exc))


def main_produce(args) -> int:
    """Send ``--count`` numbered messages; exit 0 only if every one was receipted."""
    with _failover_log("produce"):
        return _produce(args)


def _produce(args) -> int:
    run_id = f"{int(time.time() * 1000):x}"
    try:
        client = _client(args, window=args.window)
    except (FailoverURLError, ValueError) as exc:
        print(f"hamq produce: {exc}", file=sys.stderr)
        return 2
    error = None
    first = last = None
    progress = {"sent": 0, "resent_in_doubt": 0}
    with _Meter(
        lambda: client.stats["receipted"],
        lambda: (
            f"sent {client.stats['sent']} receipted {client.stats['receipted']} "
            f"reconnects {len(client.reconnect_events)}"
        ),
        args.rate_log,
    ):
        try:
            client.connect()
            first = time.time()
            _send_all(client, args, run_id, progress)
            last = time.time()
        except ClientError as exc:
            error = str(exc)
            last = time.time()
        finally:
            client.close()
    summary = {
        "command": "produce",
        "destination": args.destination,
        "run": run_id,
        "sent": progress["sent"],
        "receipted": client.stats["receipted"],
        "resent": client.stats["resent"],
        "resent_in_doubt": progress["resent_in_doubt"],
        "unconfirmed": progress["sent"] - client.stats["receipted"],
        "persistent": args.persistent,
        "window": args.window,
        "rate_limit": args.rate,
        "msgs_per_sec": _rate(client.stats["receipted"], first, last),
        "first": first,
        "last": last,
        **_reconnect_summary(client),
        "error": error,
    }
    print(json.dumps(summary), flush=True)
    if error:
        print(f"hamq produce: {error}", file=sys.stderr)
    return 0 if error is None and summary["unconfirmed"] == 0 else 1


def main_consume(args) -> int:
    """Drain a destination; count duplicates (by the producer's identity) and missing sequence numbers."""
    with _failover_log("consume"):
        return _consume(args)


def _consume(args) -> int:
    try:
        client = _client(args)
    except (FailoverURLError, ValueError) as exc:
        print(f"hamq consume: {exc}", file=sys.stderr)
        return 2
    tally = DrainTally()
    unacked = 0
    error = None
    with _Meter(
        lambda: tally.received,
        lambda: (
            f"received {tally.received} duplicates {tally.duplicates} "
            f"reconnects {len(client.reconnect_events)}"
        ),
        args.rate_log,
    ):
        try:
            client.connect()
            client.subscribe(args.destination, ack=args.ack, prefetch=args.prefetch)
            idle_since = time.monotonic()
            reconnects = 0
            while args.count is None or tally.received < args.count:
                msg = client.receive(timeout=0.25)
                now = time.monotonic()
                if msg is None:
                    if not client.connected or len(client.reconnect_events) != reconnects:
                        # Time spent failing over is not idleness.
                        reconnects = len(client.reconnect_events)
                        idle_since = now
                    if now - idle_since >= args.timeout:
                        break
                    continue
                idle_since = now
                identity, source = producer_identity(msg.headers)
                tally.add(identity, msg.redelivered, msg.headers.get(SEQ_HEADER), time.time(), source or "")
                if args.ack != "auto" and not client.ack(msg):
                    unacked += 1  # came over a failed connection; the broker redelivers it
        except ClientError as exc:
            error = str(exc)
        finally:
            client.close()
    summary = {
        "command": "consume",
        "destination": args.destination,
        "ack": args.ack,
        **tally.summary(args.expect),
        "acks_skipped": unacked,
        **_reconnect_summary(client),
        "error": error,
    }
    print(json.dumps(summary), flush=True)
    if error:
        print(f"hamq consume: {error}", file=sys.stderr)
    return 0 if error is None else 1
