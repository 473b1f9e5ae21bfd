"""``benchmarks/run [--quick] [--only NAME[,NAME...]]``: run the suite and write the report."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import shutil
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from benchmarks import drill, report, startup, takeover, throughput
from benchmarks.brokers import install_signal_cleanup
from benchmarks.stats import summarize
from benchmarks.suite import BROKERS, Suite, describe_error

SCENARIOS = {
    "throughput": (throughput.run, "persistent receipted send (1 and 8 producers), consume, non-persistent send"),
    "takeover": (takeover.run, "kill -9 of the master -> CONNECT on the new master, p50/p99/max"),
    "startup": (startup.run, "startup time and RSS with 0 / 100k / 1M pending messages"),
    "drill": (drill.run, "10 kills of the master during a failover produce: missing / duplicates"),
}
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="benchmarks/run", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer repeats, trials and smaller stores (minutes, not half an hour)")
    p.add_argument("--only", metavar="NAME[,NAME...]", help=f"run only these scenarios: {', '.join(SCENARIOS)}")
    p.add_argument("--brokers", default=",".join(BROKERS), help="comma-separated subset of: " + ", ".join(BROKERS))
    p.add_argument("--base-port", type=int, help="use consecutive ports from here instead of ephemeral ones")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where <date>.md/.json/.png go")
    p.add_argument("--no-install", action="store_true", help="never apt-get install ActiveMQ; skip its column instead")
    p.add_argument("--keep-workdir", action="store_true", help="keep broker instance dirs and logs")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="only re-render the markdown and PNG from a results JSON of an earlier run")
    return p.parse_args(argv)


def select(text: str | None, allowed, what: str) -> list:
    """Parse a comma list against ``allowed``; a typo is named with the valid choices."""
    if not text:
        return list(allowed)
    chosen = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in chosen if x not in allowed]
    if bad:
        raise SystemExit(f"benchmarks/run: unknown {what} {', '.join(bad)}. "
                         f"Fix: choose from {', '.join(allowed)}")
    return chosen


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.list:
        for name, (_, text) in SCENARIOS.items():
            print(f"{name:12s} {text}")
        return 0
    if args.render:
        return render(args.render, args.results_dir)
    scenarios = select(args.only, SCENARIOS, "scenario")
    brokers = select(args.brokers, BROKERS, "broker")
    if args.base_port is not None and not 1024 <= args.base_port <= 65000:
        raise SystemExit("benchmarks/run: --base-port must be between 1024 and 65000. Fix: pick a free high port")
    install_signal_cleanup()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="hamq-bench-"))
    now = dt.datetime.now(dt.timezone.utc)
    suite = Suite(workdir=workdir, quick=args.quick, base_port=args.base_port,
                  log=lambda msg: print(msg, flush=True), install=not args.no_install)
    for name in BROKERS:
        if name not in brokers:
            suite.unavailable[name] = "not selected (--brokers)"
    print(f"benchmarks: mode={'quick' if args.quick else 'full'} scenarios={','.join(scenarios)} "
          f"workdir={workdir}", flush=True)
    suite.check_brokers([b for b in BROKERS if b in brokers])
    load = LoadSampler()
    interrupted = None
    try:
        for name in scenarios:
            print(f"== {name}: {SCENARIOS[name][1]}", flush=True)
            t0 = time.monotonic()
            try:
                SCENARIOS[name][0](suite)
            except Exception as exc:  # noqa: BLE001 - a bug in one scenario must not lose the others
                traceback.print_exc()
                suite.notes[f"{name} crashed"] = describe_error(exc)
            print(f"== {name} done in {time.monotonic() - t0:.0f}s", flush=True)
    except KeyboardInterrupt:
        interrupted = "interrupted by Ctrl-C; the table holds what was measured before"
        print(f"!! {interrupted}", flush=True)
    finally:
        from benchmarks.brokers import _kill_all

        _kill_all()
    data = {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "mode": ("quick" if args.quick else "full") + (f", only {','.join(scenarios)}" if args.only else ""),
        "command": " ".join(["benchmarks/run"] + [shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)]),
        "machine": report.machine(),
        "unavailable": suite.unavailable,
        "notes": dict(suite.notes, **({"interrupted": interrupted} if interrupted else {})),
        "results": suite.results,
        "elapsed_s": time.monotonic() - started,
        "loadavg": load.stop(),
    }
    stamp = now.strftime("%Y-%m-%dT%H%MZ")
    paths = report.write_all(data, args.results_dir, stamp)
    print()
    print(paths.pop("markdown_text"))
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    if args.keep_workdir:
        print(f"kept broker dirs and logs in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 130 if interrupted else 0


class LoadSampler:
    """Samples the 1-minute load average every 10 s: the report says how busy the machine was."""

    def __init__(self):
        self.samples: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            try:
                with open("/proc/loadavg") as fh:
                    self.samples.append(float(fh.read().split()[0]))
            except (OSError, ValueError):
                return
            if self._stop.wait(10):
                return

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(2)
        return summarize(self.samples) if self.samples else {"n": 0}


def render(json_path: Path, results_dir: Path) -> int:
    """Re-write <stamp>.md/.png and latest.* from an earlier run's JSON (no broker runs)."""
    try:
        data = json.loads(json_path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"benchmarks/run --render: cannot read {json_path}: {exc}. "
                         "Fix: pass a results JSON written by benchmarks/run") from exc
    paths = report.write_all(data, results_dir, json_path.stem)
    print(paths.pop("markdown_text"))
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    return 0
