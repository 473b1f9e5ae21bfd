#!/usr/bin/env python3
"""Turn failover drill results into drill-report.json, .md and .png.

``playbooks/failover_drill.yml`` writes one JSON per drill run with every raw
sample: the producer's and consumer's per-second rate logs, the client
summaries (with their reconnect events), the STOMP port watch and one entry
per kill ("round").  This script, run on the controller, derives the figures
operators ask about (takeover, client outage, loss, duplicates, whether the
old master came back as a slave) in one place, so the table, the plot and
the JSON never disagree.

    drill_report.py drill-report.json                 # writes .md and .png next to it
    drill_report.py run1.json run2.json --out DIR/drill-report

Several inputs (or one with several rounds) give one table with p50/p99/max
over every round and one plot with every run.  Plotting needs matplotlib on
the controller; without it the JSON and markdown are still written and a
one-line hint is printed.  Stdlib only otherwise.

Definitions (all times are Unix seconds on the hosts' clocks; in a lab they
share one kernel, in production keep them NTP-synced):

* takeover: from the kill to the first successful TCP connect to another
  broker's STOMP port (``ports`` samples, polled every 50 ms from the client
  host); without port samples, the first /status poll that showed the new
  holder (``new_master_seen_at``, 1 s polls) and the table says so.
* client outage: from the kill to the moment the last client (producer or
  consumer) had reconnected, i.e. the gap the application saw.
* old master back as slave: its /status answered ``role: slave`` after the
  kill (``rejoined_at`` is when the drill first saw that).
"""

import argparse
import json
import math
import os
import sys

CLIENTS = ("producer", "consumer")
NO_MATPLOTLIB_HINT = ("drill-report.png skipped: matplotlib is not installed for %s. "
                      "Fix: run the drill from the venv (pip install -r requirements.txt).")


class ReportError(Exception):
    """Input the report cannot use; the message names the problem and the fix."""


# ---------------------------------------------------------------- input
def load_runs(paths):
    """Read drill JSON files; a combined report (with "runs") is read back as its runs."""
    runs = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ReportError("%s: no such file. Fix: pass the drill-report.json that "
                              "playbooks/failover_drill.yml wrote (drill_report_path)." % path) from None
        except ValueError as exc:
            raise ReportError("%s: not JSON (%s). Fix: pass the drill's JSON report, not the "
                              "markdown or a truncated file." % (path, exc)) from None
        if not isinstance(data, dict):
            raise ReportError("%s: expected a JSON object. Fix: pass the drill's JSON report." % path)
        for run in data["runs"] if isinstance(data.get("runs"), list) else [data]:
            runs.append(normalise_run(run, path))
    if not runs:
        raise ReportError("no drill runs given. Fix: pass at least one drill-report.json.")
    return runs


def normalise_run(run, path):
    """Fill in what older single-kill reports lack, and check what we need."""
    run = dict(run)
    rounds = run.get("rounds")
    if rounds is None:
        if "killed_at" not in run:
            raise ReportError("%s: has neither 'rounds' nor 'killed_at'. Fix: pass a report written by "
                              "playbooks/failover_drill.yml." % path)
        rounds = [{"round": 1, "old_master": run.get("old_master"), "old_epoch": run.get("old_epoch"),
                   "new_master": run.get("new_master"), "new_epoch": run.get("new_epoch"),
                   "killed_at": run["killed_at"], "rejoined_as": run.get("old_master_rejoined_as")}]
    for i, rnd in enumerate(rounds):
        if not isinstance(rnd, dict) or not isinstance(rnd.get("killed_at"), (int, float)):
            raise ReportError("%s: round %d has no numeric killed_at. Fix: pass a report written by "
                              "playbooks/failover_drill.yml." % (path, i + 1))
    run["rounds"] = sorted(rounds, key=lambda r: r["killed_at"])
    samples = run.get("samples") or {}
    run["samples"] = {key: list(samples.get(key) or []) for key in CLIENTS + ("ports",)}
    for key in CLIENTS:
        if not isinstance(run.get(key), dict):
            run[key] = {}
    run.setdefault("run", os.path.splitext(os.path.basename(path))[0])
    return run


# ---------------------------------------------------------------- figures
def percentile(values, p):
    """Linear interpolation between closest ranks (numpy's default); None when empty."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    k = (len(values) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def _window(rounds, index):
    """The time span that belongs to one kill: up to the next kill."""
    start = rounds[index]["killed_at"]
    end = rounds[index + 1]["killed_at"] if index + 1 < len(rounds) else math.inf
    return start, end


def analyse_round(run, index):
    """Derived figures of one kill, from the run's raw samples."""
    rnd = run["rounds"][index]
    start, end = _window(run["rounds"], index)
    out = dict(rnd)
    out["run"] = run.get("run")
    opened = [s for s in run["samples"]["ports"]
              if s.get("open") and s.get("node") != rnd.get("old_master") and start <= s.get("t", -1) < end]
    if opened:
        out["new_master_at"] = min(s["t"] for s in opened)
        out["new_master_source"] = "port"
        if not rnd.get("new_master"):
            out["new_master"] = min(opened, key=lambda s: s["t"])["node"]
    elif isinstance(rnd.get("new_master_seen_at"), (int, float)):
        out["new_master_at"] = rnd["new_master_seen_at"]
        out["new_master_source"] = "status poll"
    else:
        out["new_master_at"] = None
        out["new_master_source"] = None
    out["takeover_seconds"] = _since(out["new_master_at"], start)
    clients = {}
    for name in CLIENTS:
        events = [e for e in run[name].get("reconnect_events") or []
                  if isinstance(e.get("up_at"), (int, float)) and start <= e["up_at"] < end]
        first = min(events, key=lambda e: e["up_at"]) if events else None
        clients[name] = None if first is None else {
            "down_at": first.get("down_at"), "up_at": first["up_at"],
            "down_after_kill": _since(first.get("down_at"), start),
            "up_after_kill": _since(first["up_at"], start)}
    out["clients"] = clients
    ups = [c["up_after_kill"] for c in clients.values() if c]
    out["client_outage_seconds"] = round(max(ups), 3) if ups else None
    out["rejoin_seconds"] = _since(rnd.get("rejoined_at"), start)
    out["back_as_slave"] = rnd.get("rejoined_as") == "slave"
    return out


def _since(t, start):
    return round(t - start, 3) if isinstance(t, (int, float)) else None


def _count(run, client, key):
    value = run[client].get(key)
    return value if isinstance(value, int) else None


def analyse(runs):
    """Every round's figures plus p50/p99/max and message totals over all runs."""
    rounds = []
    for k, run in enumerate(runs):
        for i in range(len(run["rounds"])):
            rnd = analyse_round(run, i)
            rnd["run_index"] = k
            rnd["index"] = len(rounds) + 1
            rounds.append(rnd)
    stats = {}
    for key in ("takeover_seconds", "client_outage_seconds", "rejoin_seconds"):
        values = [r[key] for r in rounds if r[key] is not None]
        stats[key] = {"n": len(values), "p50": _r(percentile(values, 50)),
                      "p99": _r(percentile(values, 99)), "max": _r(max(values) if values else None)}
    totals = {}
    for client, key in (("producer", "sent"), ("producer", "receipted"), ("producer", "resent"),
                        ("consumer", "received"), ("consumer", "duplicates"), ("consumer", "missing"),
                        ("consumer", "redelivered_repeats"), ("consumer", "unidentified")):
        values = [_count(run, client, key) for run in runs]
        totals[key] = None if any(v is None for v in values) else sum(values)
    totals["messages"] = sum(int(run.get("messages") or 0) for run in runs)
    # What the consumer told messages apart by (a report from before 1.1 does not say).
    identities = sorted({str(run["consumer"].get("identity")) for run in runs
                         if isinstance(run.get("consumer"), dict) and run["consumer"].get("identity")})
    totals["identity"] = " / ".join(identities) or None
    back = sum(1 for r in rounds if r["back_as_slave"])
    sources = sorted({r["new_master_source"] for r in rounds if r["new_master_source"]})
    return {"rounds": rounds, "stats": stats, "totals": totals,
            "back_as_slave": {"yes": back, "of": len(rounds)}, "takeover_source": sources,
            "passed": (all(run["passed"] is True for run in runs)
                       if all(isinstance(run.get("passed"), bool) for run in runs) else None)}


def _r(value):
    return None if value is None else round(value, 3)


# ---------------------------------------------------------------- markdown
def _fmt(value, unit=""):
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "%.2f%s" % (value, unit)
    return "%s%s" % (value, unit)


def markdown(runs, summary, png_name=None):
    """The summary table operators read first, then one row per kill."""
    st, tot = summary["stats"], summary["totals"]
    rounds = summary["rounds"]
    methods = sorted({str(run.get("kill_method")) for run in runs})
    source = " / ".join(summary["takeover_source"]) or "n/a"
    back = summary["back_as_slave"]
    lines = [
        "# hamq failover drill",
        "",
        "%d kill(s) in %d run(s) (%s), %s; %s." % (
            len(rounds), len(runs), ", ".join(methods), ", ".join(str(run.get("run")) for run in runs),
            {True: "every check passed", False: "**a check FAILED**",
             None: "no check results in the input"}[summary["passed"]]),
        "",
        "| figure | p50 | p99 | max | rounds |",
        "|---|---:|---:|---:|---:|",
        _stat_row("takeover: kill → new master's port open (s) [%s]" % source, st["takeover_seconds"]),
        _stat_row("client outage: kill → last client reconnected (s)", st["client_outage_seconds"]),
        _stat_row("old master back as slave: kill → seen as slave (s)", st["rejoin_seconds"]),
        "",
        "| messages | count |",
        "|---|---:|",
        "| sent (of %s) | %s |" % (tot["messages"], _fmt(tot["sent"])),
        "| receipted | %s |" % _fmt(tot["receipted"]),
        "| resent by the client after a failover | %s |" % _fmt(tot["resent"]),
        "| received | %s |" % _fmt(tot["received"]),
        "| duplicates | %s |" % _fmt(tot["duplicates"]),
        "| missing | %s |" % _fmt(tot["missing"]),
        "| redelivered (ack lost with the old master) | %s |" % _fmt(tot["redelivered_repeats"]),
        "| messages counted by | %s |" % _fmt(tot["identity"]),
        "| could not be identified (not counted above) | %s |" % _fmt(tot["unidentified"]),
        "| old master back as slave | %s (%d of %d) |" % (
            "yes" if back["yes"] == back["of"] and back["of"] else "no", back["yes"], back["of"]),
        "",
        "| round | old → new master (epoch) | takeover (s) | client outage (s) | "
        "producer down → up (s) | consumer down → up (s) | old master back as |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for rnd in rounds:
        lines.append("| %d | %s (%s) → %s (%s) | %s | %s | %s | %s | %s |" % (
            rnd["index"], rnd.get("old_master"), _fmt(rnd.get("old_epoch")), rnd.get("new_master"),
            _fmt(rnd.get("new_epoch")), _fmt(rnd["takeover_seconds"]), _fmt(rnd["client_outage_seconds"]),
            _client_cell(rnd["clients"]["producer"]), _client_cell(rnd["clients"]["consumer"]),
            "%s after %s s" % (rnd.get("rejoined_as"), _fmt(rnd["rejoin_seconds"]))
            if rnd["rejoin_seconds"] is not None else str(rnd.get("rejoined_as"))))
    lines += ["", "Times are from the kill; `rounds` counts the kills with that figure (no client reconnect "
              "after a kill means the load had already ended). p99 of few rounds interpolates towards the max."]
    if png_name:
        lines += ["", "![drill timeline](%s)" % png_name]
    return "\n".join(lines) + "\n"


def _stat_row(label, stat):
    return "| %s | %s | %s | %s | %d |" % (label, _fmt(stat["p50"]), _fmt(stat["p99"]), _fmt(stat["max"]), stat["n"])


def _client_cell(client):
    if not client:
        return "no reconnect"
    return "%s → %s" % (_fmt(client["down_after_kill"]), _fmt(client["up_after_kill"]))


# ---------------------------------------------------------------- plot
ZOOM_BEFORE, ZOOM_AFTER = 10.0, 20.0  # seconds around each kill in the close-up panels
MAX_ZOOMS = 6


def plot(runs, summary, path):
    """Top: one timeline per run; bottom: a close-up around each kill (the first few)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rounds = summary["rounds"]
    zooms = rounds[:MAX_ZOOMS]
    fig = plt.figure(figsize=(12, 2.6 * len(runs) + (3.0 if zooms else 0) + 1.2), layout="constrained")
    grid = fig.add_gridspec(len(runs) + (1 if zooms else 0), max(1, len(zooms)))
    for k, run in enumerate(runs):
        ax = fig.add_subplot(grid[k, :])
        t0 = _run_start(run)
        mine = [r for r in rounds if r["run_index"] == k]
        _draw(ax, run, mine, t0, label_kills=True)
        ax.set_xlim(left=0)
        ax.set_xlabel("seconds since the load started")
        ax.set_title("run %s (%s): %s" % (run.get("run"), run.get("kill_method"), _run_caption(run)),
                     fontsize=10, loc="left")
    for j, rnd in enumerate(zooms):
        ax = fig.add_subplot(grid[len(runs), j])
        run = runs[rnd["run_index"]]
        _draw(ax, run, [rnd], rnd["killed_at"], label_kills=False)
        ax.set_xlim(-ZOOM_BEFORE, ZOOM_AFTER)
        ax.set_xlabel("seconds from kill %d" % rnd["index"])
        outage = ("outage %s s" % _fmt(rnd["client_outage_seconds"]) if rnd["client_outage_seconds"] is not None
                  else "no client reconnect (load over)")
        ax.set_title("kill %d: %s → %s, takeover %s s, %s" % (
            rnd["index"], rnd.get("old_master"), rnd.get("new_master"), _fmt(rnd["takeover_seconds"]), outage),
            fontsize=9, loc="left")
        if j:
            ax.set_ylabel("")
    handles = [Line2D([], [], color="tab:blue", linewidth=1.6, label="producer msgs/s (receipted)"),
               Line2D([], [], color="tab:orange", linewidth=1.6, label="consumer msgs/s"),
               Line2D([], [], color="tab:red", linewidth=2.0, label="master killed"),
               Line2D([], [], color="tab:green", linestyle="--", linewidth=1.6, label="new master's port open"),
               Patch(color="tab:red", alpha=0.15, label="client outage (kill → last client back)"),
               Line2D([], [], color="tab:gray", linestyle=":", linewidth=1.8, label="old master seen as slave")]
    fig.legend(handles=handles, loc="outside lower center", ncol=6, fontsize=8.5, frameon=False)
    st = summary["stats"]
    fig.suptitle("hamq failover drill, %d kill(s): takeover p50 %s s / max %s s, client outage p50 %s s / max %s s"
                 % (len(rounds), _fmt(st["takeover_seconds"]["p50"]), _fmt(st["takeover_seconds"]["max"]),
                    _fmt(st["client_outage_seconds"]["p50"]), _fmt(st["client_outage_seconds"]["max"])),
                 fontsize=11)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _draw(ax, run, rounds, t0, label_kills):
    """Rates of both clients and the markers of the given rounds, x relative to t0."""
    peak = 1.0
    for name, colour in (("producer", "tab:blue"), ("consumer", "tab:orange")):
        samples = [s for s in run["samples"][name] if isinstance(s.get("t"), (int, float))]
        if samples:
            ys = [s.get("rate") or 0 for s in samples]
            peak = max(peak, max(ys))
            # A sample is the rate over the second before its time stamp.
            ax.step([s["t"] - t0 for s in samples], ys, where="pre", color=colour, linewidth=1.6)
    for rnd in rounds:
        kill = rnd["killed_at"] - t0
        if rnd["client_outage_seconds"] is not None:
            ax.axvspan(kill, kill + rnd["client_outage_seconds"], color="tab:red", alpha=0.15, linewidth=0)
        ax.axvline(kill, color="tab:red", linewidth=2.0)
        if label_kills:
            ax.text(kill, peak * 1.12, " kill %d" % rnd["index"], color="tab:red", fontsize=9, va="bottom")
        if rnd["new_master_at"] is not None:
            ax.axvline(rnd["new_master_at"] - t0, color="tab:green", linestyle="--", linewidth=1.6)
        if rnd.get("rejoined_at") is not None:
            ax.axvline(rnd["rejoined_at"] - t0, color="tab:gray", linestyle=":", linewidth=1.8)
    ax.set_ylim(0, peak * 1.25)
    ax.set_ylabel("msgs/s")
    ax.grid(True, alpha=0.3)


def _run_start(run):
    times = [s["t"] for key in CLIENTS for s in run["samples"][key] if isinstance(s.get("t"), (int, float))]
    if times:
        return min(times) - 1.0  # a sample covers the second before it
    return min(r["killed_at"] for r in run["rounds"]) - 1.0


def _run_caption(run):
    parts = ["%s sent" % _fmt(run["producer"].get("sent")),
             "%s received" % _fmt(run["consumer"].get("received")),
             "%s duplicates" % _fmt(run["consumer"].get("duplicates")),
             "%s missing" % _fmt(run["consumer"].get("missing"))]
    return ", ".join(parts)


# ---------------------------------------------------------------- main
def write_report(paths, out_base, want_plot=True):
    """Write <out_base>.json/.md (and .png); returns (summary, png_path or None, hint or None)."""
    runs = load_runs(paths)
    summary = analyse(runs)
    os.makedirs(os.path.dirname(os.path.abspath(out_base)), exist_ok=True)
    png_path, hint = None, None
    if want_plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            hint = NO_MATPLOTLIB_HINT % sys.executable
        else:
            png_path = out_base + ".png"
            try:
                plot(runs, summary, png_path)
            except Exception as exc:  # the table matters more than the picture
                hint = "drill-report.png failed (%s: %s); the JSON and markdown are complete." % (
                    type(exc).__name__, exc)
                png_path = None
    md = markdown(runs, summary, os.path.basename(png_path) if png_path else None)
    combined = {"summary": summary, "runs": runs}
    if len(runs) == 1:  # keep a single run's top-level fields where readers expect them
        combined = dict(runs[0], summary=summary)
    _write(out_base + ".json", json.dumps(combined, indent=2, sort_keys=True) + "\n")
    _write(out_base + ".md", md)
    return summary, md, png_path, hint


def _write(path, text):
    """Write via a temporary file, so a crash never leaves half a report."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", help="drill JSON report(s) written by failover_drill.yml")
    parser.add_argument("--out", help="output path without extension (default: the first input's, "
                                      "e.g. drill-report -> drill-report.json/.md/.png)")
    parser.add_argument("--no-plot", action="store_true", help="write JSON and markdown only")
    parser.add_argument("--quiet", action="store_true", help="do not print the markdown")
    args = parser.parse_args(argv)
    out_base = args.out or os.path.splitext(args.inputs[0])[0]
    try:
        summary, md, png_path, hint = write_report(args.inputs, out_base, want_plot=not args.no_plot)
    except ReportError as exc:
        print("drill_report: %s" % exc, file=sys.stderr)
        return 2
    if not args.quiet:
        sys.stdout.write(md)
    if hint:
        print(hint, file=sys.stderr)
    print("wrote %s.json, %s.md%s" % (out_base, out_base, ", " + png_path if png_path else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
