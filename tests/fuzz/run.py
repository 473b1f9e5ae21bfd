#!/usr/bin/env python3
"""Run the fuzz targets: ``python tests/fuzz/run.py --examples 100000``.

Each target gets that many hypothesis-generated inputs. The run fails on an
undocumented exception, on any single input slower than ``--time-limit``
seconds, or allocating a tracemalloc peak over ``--memory-limit-mib``. A
failing input is shrunk by hypothesis and printed; add it to
tests/unit/test_fuzz_regressions.py once fixed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import FuzzFailure, _shown, fuzz  # noqa: E402
from targets import all_targets  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000, help="inputs per target (default 100000)")
    parser.add_argument("--targets", default="all", help="comma-separated names (default all)")
    parser.add_argument("--time-limit", type=float, default=1.0, help="max seconds for one input (default 1)")
    parser.add_argument("--memory-limit-mib", type=float, default=32.0, help="max tracemalloc peak per input")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed, to repeat a run")
    parser.add_argument("--no-trace-memory", action="store_true", help="skip tracemalloc (faster)")
    parser.add_argument(
        "--progress", type=int, default=10_000, help="report every N inputs on stderr (0: never)"
    )
    parser.add_argument("--show-slowest", action="store_true", help="print each target's slowest input")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args(argv)

    targets = all_targets()
    if args.list:
        for t in targets.values():
            print(f"{t.name:9s} {t.description}")
        return 0
    names = list(targets) if args.targets == "all" else [n.strip() for n in args.targets.split(",")]
    unknown = [n for n in names if n not in targets]
    if unknown:
        print(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(targets)}", file=sys.stderr)
        return 2
    print(
        f"fuzz: {args.examples} inputs per target, time limit {args.time_limit}s per input, "
        f"memory limit {args.memory_limit_mib} MiB per input, python {sys.version.split()[0]}",
        flush=True,
    )
    failed = False
    started = time.perf_counter()
    for name in names:
        try:
            stats = fuzz(
                targets[name],
                args.examples,
                time_limit=args.time_limit,
                memory_limit_bytes=int(args.memory_limit_mib * 1024 * 1024),
                seed=args.seed,
                trace_memory=not args.no_trace_memory,
                progress_every=args.progress,
            )
            print(stats.line(), flush=True)
            if args.show_slowest:
                print(f"          slowest input: {_shown(stats.slowest, 300)}", flush=True)
        except FuzzFailure as exc:
            failed = True
            print(f"{name:9s} FAIL {exc}", flush=True)
        except Exception as exc:  # hypothesis re-raises the shrunk input's own error
            failed = True
            print(f"{name:9s} FAIL {type(exc).__name__}: {exc}", flush=True)
    print(f"total {time.perf_counter() - started:.1f}s: {'FAILED' if failed else 'all targets passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
