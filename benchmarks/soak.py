"""``python -m benchmarks.soak``: long fault soaks of real hamq brokers; prints what broke, never asserts.

Three soaks, on the fault-injection harness of tests/faults (faultlab):

* ``kills``: a 3-broker group, a ledger producer (persistent, receipted, resends after failover)
  and a concurrent ledger consumer; the master is killed -9 ``--kills`` times spread over
  ``--messages`` messages. Figures: lost, unflagged duplicates, dual-master samples (CONNECT
  watcher), takeover p50 / max (kill -9 to the first CONNECTED from another broker).
* ``corruption``: ``--corruption`` trials, each on a fresh store a broker filled with receipted
  messages and then lost (-9): one random damage (single-bit flip, a run of garbage bytes, or a
  truncation) at a random offset, then a restart and a drain. Figures: garbled 0, lost before
  the damage 0, single-bit flips that lost more than the one batch they hit.
* ``failovers``: ``--failovers`` pause/yank failovers under load: the master is frozen (SIGSTOP
  at a random moment, or by the fault shim inside a journal write), its lock file deleted or
  emptied, a slave takes over, the old master is resumed. Figures: receipts from an ex-master
  after the takeover (0), dual-master samples, lost, ex-master writes past a seal beyond the
  one write it was frozen inside.

``--short`` runs a few of each (what benchmarks/tests runs so the soak cannot rot). The seed is
printed; ``--seed`` replays it. Results go to stdout as text and, with ``--json``, to a file.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT / "tests", ROOT / "tests" / "faults"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from faultlab import journal  # noqa: E402
from faultlab.faults import writes_after_seals  # noqa: E402
from faultlab.group import BrokerGroup  # noqa: E402
from faultlab.ledger import ledger_body, parse_body  # noqa: E402
from faultlab.scenario import PAUSE_MODES, Load, pause_and_yank, pause_specs, start_group  # noqa: E402
from faultlab.stomp import StompClient, drain, try_connect  # noqa: E402

from benchmarks.stats import percentile  # noqa: E402


def log(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------------------- kills
def _takeover_s(group: BrokerGroup, victim) -> float:
    """kill -9 ``victim`` (the master) and time it to the first CONNECTED from another broker."""
    others = [b.port for b in group.brokers.values() if b is not victim]
    t0 = time.monotonic()
    victim.kill()
    while True:
        for port in others:
            if try_connect(port, timeout=1.0):
                return time.monotonic() - t0
        if time.monotonic() - t0 > 120:
            raise RuntimeError(f"no takeover within 120 s\n{group.logs()}")
        time.sleep(0.002)


def soak_kills(root: Path, rng: random.Random, kills: int, messages: int) -> Dict:
    group = BrokerGroup(root / "kills", keep_alive_ms=500)
    try:
        start_group(group)
        takeovers: List[float] = []
        step = max(1, messages // (kills + 1))
        # paced so that production spans all the kills (about 0.6 s per kill, takeover and restart)
        pace = (kills + 1) * 0.6 / messages if messages else 0.0
        with Load(group, count=messages, window=8, size=256, deadline_s=3600, pace_s=pace) as load:
            for k in range(kills):
                load.wait_receipted(step * (k + 1), timeout=600)
                time.sleep(rng.uniform(0, 0.2))
                master = group.wait_master()
                takeovers.append(_takeover_s(group, master))
                master.start()
                log(f"  kill {k + 1}/{kills}: takeover {takeovers[-1] * 1000:.0f} ms, "
                    f"{load.receipted()} receipted so far")
        report = load.report
    finally:
        group.close()
    return {
        "kills": kills, "messages": messages, "sent": report.sent, "receipted": report.receipted,
        "delivered": report.delivered, "lost": len(report.lost), "phantom": len(report.phantom),
        "garbled": report.garbled, "unflagged_duplicates": len(report.unflagged_duplicates),
        "flagged_redeliveries": report.flagged_redeliveries, "dual_master_samples": report.dual_master,
        "past_seal_batches": len(report.past_seal),
        "takeover_p50_ms": round(percentile(takeovers, 50) * 1000, 1) if takeovers else None,
        "takeover_max_ms": round(max(takeovers) * 1000, 1) if takeovers else None,
        "notes": report.notes[:3],
    }


# ---------------------------------------------------------------------------- corruption
DAMAGE = ("bit", "bit", "garbage", "truncate")


def _corruption_trial(root: Path, rng: random.Random, batches: int, kind: str) -> Dict:
    group = BrokerGroup(root, kahadb_attrs='checkpointInterval="3600000"')
    try:
        broker = group.add("a")
        group.wait_master()
        client = StompClient.open(broker.port)
        ids = []
        for i in range(batches):
            msg_id = f"c-{i:04d}"
            body = ledger_body(msg_id, rng.choice([16, 100, 700, 3000]))
            answer = client.request("SEND", {"destination": "/queue/c", "persistent": "true", "message-id": msg_id,
                                             "_AMQ_DUPL_ID": msg_id}, body)
            if answer.command != "RECEIPT":
                raise RuntimeError(f"SEND {msg_id} answered {answer.command}")
            ids.append(msg_id)
        client.close()
        broker.kill()
        (_n, path, _h), = journal.segments(group.kahadb)
        found = journal.batches(path)
        offset = journal.random_offset(rng, path)
        hit = journal.batch_containing(found, offset)
        if kind == "bit":
            journal.flip_bit(path, offset, rng.randrange(8))
        elif kind == "garbage":
            run = bytes(rng.randrange(256) for _ in range(rng.randint(2, 64)))
            with open(path, "r+b") as f:
                f.seek(offset)
                f.write(run)
        else:
            journal.truncate(path, offset)
        broker.start()
        group.wait_master()
        delivered = [parse_body(f.body) for f in drain(broker.port, "/queue/c", idle_s=1.0)]
    finally:
        group.close()
    got = {m for m, _ in delivered}
    lost = [i for i, m in enumerate(ids) if m not in got]
    return {"kind": kind, "hit": hit, "garbled": sum(1 for m, ok in delivered if m is None or not ok),
            "phantom": len(got - set(ids) - {None}), "lost_before": sum(1 for i in lost if i < hit),
            "lost": len(lost), "lost_batches_beyond_hit": len([i for i in lost if i != hit])}


def soak_corruption(root: Path, rng: random.Random, trials: int, batches: int = 60) -> Dict:
    results = []
    for t in range(trials):
        results.append(_corruption_trial(root / f"corruption-{t}", rng, batches, DAMAGE[t % len(DAMAGE)]))
        shutil.rmtree(root / f"corruption-{t}", ignore_errors=True)
        if (t + 1) % 20 == 0 or t + 1 == trials:
            log(f"  corruption trial {t + 1}/{trials}")
    bits = [r for r in results if r["kind"] == "bit"]
    return {
        "trials": trials, "batches_per_trial": batches,
        "by_kind": {k: sum(1 for r in results if r["kind"] == k) for k in ("bit", "garbage", "truncate")},
        "garbled": sum(r["garbled"] for r in results), "phantom": sum(r["phantom"] for r in results),
        "lost_before_the_damage": sum(r["lost_before"] for r in results),
        "bit_flips": len(bits),
        "bit_flips_losing_more_than_one_batch": sum(1 for r in bits if r["lost_batches_beyond_hit"] > 0),
        "max_batches_lost_by_one_bit_flip": max((r["lost"] for r in bits), default=0),
        "messages_lost_after_the_damage": sum(r["lost"] - r["lost_before"] for r in results),
    }


# ---------------------------------------------------------------------------- pause / yank failovers
def soak_failovers(root: Path, rng: random.Random, trials: int) -> Dict:
    group = BrokerGroup(root / "failovers", keep_alive_ms=500)
    iolog = group.root / "iolog"
    specs, rules = pause_specs(group, iolog)
    modes: List[str] = []
    try:
        start_group(group, specs=specs)
        with Load(group, count=10**9, window=8, deadline_s=36000) as load:
            for t in range(trials):
                load.wait_progress(rng.randint(20, 200), timeout=600)
                time.sleep(rng.uniform(0, 0.2))
                modes.append(PAUSE_MODES[t % 2])
                pause_and_yank(group, load, rules, modes[-1], rng)
                if (t + 1) % 10 == 0 or t + 1 == trials:
                    log(f"  failover {t + 1}/{trials}: {len(load.receipts_after_resume())} receipts after "
                        f"takeover so far")
            load.producer.stop()
        report = load.report
        after = load.receipts_after_resume()
        past = writes_after_seals(iolog, group.kahadb)
    finally:
        group.close()
    return {
        "failovers": trials, "by_mode": {m: modes.count(m) for m in PAUSE_MODES},
        "receipts_after_takeover": len(after), "dual_master_samples": report.dual_master,
        "lost": len(report.lost), "unflagged_duplicates": len(report.unflagged_duplicates),
        "receipted": report.receipted,
        "ex_masters_writing_past_a_seal": len(past),
        "writes_past_a_seal_beyond_the_one_in_flight": sum(max(0, len(w) - 1) for w in past.values()),
    }


# ---------------------------------------------------------------------------- main
def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--short", action="store_true", help="a few of each: 2 kills x 300, 4 corruptions, 2 failovers")
    p.add_argument("--only", default="kills,corruption,failovers", help="comma list of soaks to run")
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--corruption", type=int, default=200, help="corruption trials")
    p.add_argument("--failovers", type=int, default=200, help="pause/yank failovers")
    p.add_argument("--seed", type=int, help="replay a run")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    p.add_argument("--workdir", type=Path, help="keep broker files here instead of a temporary directory")
    args = p.parse_args(argv)
    if args.short:
        args.kills, args.messages, args.corruption, args.failovers = 2, 300, 4, 2
    for name in ("kills", "messages", "corruption", "failovers"):
        if getattr(args, name) < 0:
            p.error(f"--{name} must be 0 or more")
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    soaks = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in soaks if s not in ("kills", "corruption", "failovers")]
    if unknown:
        raise SystemExit(f"unknown soak {', '.join(unknown)}. Fix: choose from kills, corruption, failovers")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    rng = random.Random(seed)
    log(f"soak seed {seed} (replay with --seed {seed})")
    root = args.workdir or Path(tempfile.mkdtemp(prefix="hamq-soak-"))
    results: Dict[str, Dict] = {"seed": seed}
    started = time.monotonic()
    plan = [("kills", f"{args.kills} x kill -9 of the master over {args.messages} messages, concurrent consumer",
             lambda: soak_kills(root, rng, args.kills, args.messages)),
            ("corruption", f"{args.corruption} trials of random journal damage",
             lambda: soak_corruption(root, rng, args.corruption)),
            ("failovers", f"{args.failovers} pause/yank failovers under load",
             lambda: soak_failovers(root, rng, args.failovers))]
    try:
        for name, what, run in plan:
            if name not in soaks:
                continue
            log(f"{name}: {what}")
            results[name] = run()
            log(FORMATS[name](results[name]))  # each soak's figures as soon as it is done
            if args.json:
                args.json.write_text(json.dumps(results, indent=2) + "\n")
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    log("")
    log(format_results(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _format_kills(k: Dict) -> str:
    return (f"kills {k['kills']} x {k['messages']} messages: lost {k['lost']}, unflagged duplicates "
            f"{k['unflagged_duplicates']}, dual-master samples {k['dual_master_samples']}, takeover p50 "
            f"{k['takeover_p50_ms']} ms / max {k['takeover_max_ms']} ms (sent {k['sent']}, receipted "
            f"{k['receipted']}, delivered {k['delivered']}, flagged redeliveries {k['flagged_redeliveries']}, "
            f"phantom {k['phantom']}, garbled {k['garbled']}, past-seal batches {k['past_seal_batches']})")


def _format_corruption(c: Dict) -> str:
    return (f"corruption {c['trials']} trials {c['by_kind']}: garbled {c['garbled']}, lost before the damage "
            f"{c['lost_before_the_damage']}, single-bit flips losing more than their batch "
            f"{c['bit_flips_losing_more_than_one_batch']} of {c['bit_flips']} (max "
            f"{c['max_batches_lost_by_one_bit_flip']} lost by one flip), phantom {c['phantom']}, "
            f"messages lost after the damage {c['messages_lost_after_the_damage']}")


def _format_failovers(f: Dict) -> str:
    return (f"failovers {f['failovers']} {f['by_mode']}: receipts after takeover {f['receipts_after_takeover']}, "
            f"dual-master samples {f['dual_master_samples']}, lost {f['lost']}, unflagged duplicates "
            f"{f['unflagged_duplicates']}, ex-master writes past a seal beyond the one in flight "
            f"{f['writes_past_a_seal_beyond_the_one_in_flight']}")


FORMATS = {"kills": _format_kills, "corruption": _format_corruption, "failovers": _format_failovers}


def format_results(results: Dict) -> str:
    lines = [f"soak results (seed {results['seed']}, {results['elapsed_s']} s)"]
    lines += [FORMATS[name](results[name]) for name in FORMATS if name in results]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
