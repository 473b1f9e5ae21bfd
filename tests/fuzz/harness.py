"""Run a fuzz target through hypothesis and measure each input.

Hypothesis draws a structured input and a seed; the harness runs that input
and ``variants - 1`` cheap random mutants of it derived from the seed (the
target's ``mutate``). Drawing through hypothesis costs milliseconds per input
on a busy machine; the mutants cost microseconds, which is what makes 100k+
inputs per target affordable, and a failing case still shrinks (hypothesis
shrinks the structure and the seed, and the report prints the exact input).

A target is an input strategy plus a function that must either return or
raise one of the target's documented error types. Anything else is a crash.
Per input the harness records the wall time and the tracemalloc peak of the
call itself (above what was allocated before it), so the 100k run can
enforce "no input over 1 s, no input allocating more than N MiB".

Timing is enforced only when a limit is given (the runner gives one); the
quick run inside the unit tests reports timing but never fails on it, since
the machine is shared and noisy.
"""

from __future__ import annotations

import random
import resource
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Tuple, Type

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hseed
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy


@dataclass
class Target:
    name: str
    strategy: SearchStrategy
    #: Called with one generated input; returns or raises one of ``expected``.
    run: Callable[[Any], None]
    expected: Tuple[Type[BaseException], ...]
    description: str = ""
    #: ``mutate(input, rng) -> input``: a cheap random variant of a drawn input.
    mutate: Optional[Callable[[Any, random.Random], Any]] = None


class FuzzFailure(AssertionError):
    """An input crashed, hung or used too much memory."""


@dataclass
class Stats:
    target: str
    examples: int = 0
    expected_errors: int = 0
    seconds: float = 0.0
    max_input_seconds: float = 0.0
    max_input_peak_bytes: int = 0
    rss_before_kib: int = 0
    rss_after_kib: int = 0
    failure: Optional[str] = None
    slowest: Any = field(default=None, repr=False)

    def line(self) -> str:
        status = "FAIL" if self.failure else "ok"
        return (
            f"{self.target:9s} {status:4s} inputs={self.examples:7d} "
            f"rejected-as-documented={self.expected_errors:7d} total={self.seconds:7.1f}s "
            f"max-input={self.max_input_seconds * 1000:7.1f}ms "
            f"max-peak={self.max_input_peak_bytes / 1024:8.1f}KiB "
            f"maxrss={self.rss_before_kib / 1024:.0f}->{self.rss_after_kib / 1024:.0f}MiB"
        )


def _time_once(target: Target, data: Any) -> float:
    start = time.perf_counter()
    try:
        target.run(data)
    except target.expected:
        pass
    return time.perf_counter() - start


def _shown(data: Any, limit: int = 3000) -> str:
    text = repr(data)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def _maxrss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def fuzz(
    target: Target,
    examples: int,
    time_limit: Optional[float] = None,
    memory_limit_bytes: Optional[int] = None,
    seed: Optional[int] = None,
    trace_memory: bool = True,
    variants: int = 10,
    progress_every: int = 0,
    batch: int = 500,
) -> Stats:
    """Run ``examples`` inputs; raise :class:`FuzzFailure` (after shrinking) on the first bad one."""
    stats = Stats(target=target.name, rss_before_kib=_maxrss_kib())

    per_example = variants if target.mutate is not None else 1
    started = time.perf_counter()

    def check(case: Tuple[Any, int]) -> None:
        data, mutation_seed = case
        rng = random.Random(mutation_seed)
        run_one(data)
        for _ in range(per_example - 1):
            run_one(target.mutate(data, rng))

    def run_one(data: Any) -> None:
        if trace_memory:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
        start = time.perf_counter()
        outcome = None
        try:
            target.run(data)
        except target.expected:
            outcome = "expected"
        except Exception as exc:  # noqa: BLE001 - every other type is the bug we look for
            raise FuzzFailure(
                f"{target.name}: undocumented {type(exc).__name__}: {exc}\n  input: {_shown(data)}"
            ) from exc
        finally:
            elapsed = time.perf_counter() - start
        peak = 0
        if trace_memory:
            peak = tracemalloc.get_traced_memory()[1] - base
        stats.examples += 1
        if progress_every and stats.examples % progress_every == 0:
            print(
                f"  {target.name}: {stats.examples} inputs, {time.perf_counter() - started:.0f}s",
                file=sys.stderr,
                flush=True,
            )
        if outcome == "expected":
            stats.expected_errors += 1
        if elapsed > stats.max_input_seconds:
            stats.max_input_seconds = elapsed
            stats.slowest = data
        stats.max_input_peak_bytes = max(stats.max_input_peak_bytes, peak)
        if time_limit is not None and elapsed > time_limit:
            # The machine is shared: one slow run may be a scheduling hiccup.
            # An input counts as slow only if it is slow every time.
            elapsed = min([elapsed] + [_time_once(target, data) for _ in range(2)])
        if time_limit is not None and elapsed > time_limit:
            raise FuzzFailure(
                f"{target.name}: one input took {elapsed:.3f} s (limit {time_limit} s)\n  input: {_shown(data)}"
            )
        if memory_limit_bytes is not None and peak > memory_limit_bytes:
            raise FuzzFailure(
                f"{target.name}: one input allocated a peak of {peak} bytes (limit {memory_limit_bytes})"
                f"\n  input: {_shown(data)}"
            )

    # Hypothesis remembers every case of a run (to avoid repeats), which costs
    # tens of KiB each; fresh runs of ``batch`` cases keep memory flat.
    wanted = max(1, -(-examples // per_example))
    batch_seed = random.Random(seed)
    # One tracing session for the whole run: every tracemalloc start/stop
    # cycle leaves a few KiB behind, which over 100k inputs looked like a leak
    # in the targets. Per input, reset_peak() isolates that input's peak.
    if trace_memory:
        tracemalloc.start()
    try:
        while stats.examples < examples:
            cases = min(batch, wanted)
            runner = settings(
                max_examples=cases,
                deadline=None,
                database=None,
                derandomize=False,
                phases=[Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
                print_blob=False,
            )(given(st.tuples(target.strategy, st.integers(0, 2**32 - 1)))(check))
            runner = hseed(batch_seed.getrandbits(64))(runner)
            before = stats.examples
            runner()
            if stats.examples == before:  # pragma: no cover - the strategy space is exhausted
                break
    except FuzzFailure as exc:
        stats.failure = str(exc)
        raise
    finally:
        if trace_memory:
            tracemalloc.stop()
        stats.seconds = time.perf_counter() - started
        stats.rss_after_kib = _maxrss_kib()
    return stats
