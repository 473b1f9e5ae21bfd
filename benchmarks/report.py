"""The markdown table, the JSON with every raw sample, and the scaling plot.

Files are written to a temp name and renamed, so a crash or Ctrl-C never leaves a half-written
table; cells that could not be measured say why in a footnote instead of breaking the table.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

from benchmarks.suite import BROKERS

# metric -> (row label, goal text); goal_check() below decides "met" for the rows with a goal
ROWS = [
    ("send_persistent_1", "Persistent SEND, receipt per message, 1 producer (msgs/s)", "≥ 1.5× ActiveMQ"),
    ("send_persistent_8", "Persistent SEND, receipt per message, 8 producers (msgs/s)", "≥ 3× ActiveMQ"),
    ("consume_individual", "Consume, client-individual ACK (msgs/s)", "≥ 1× ActiveMQ"),
    ("send_nonpersistent", "Non-persistent SEND (msgs/s)", "—"),
    ("takeover_default", "Takeover kill -9 → CONNECT, ActiveMQ default locker (ms)", "hamq p50 ≤ 250, max ≤ 500"),
    ("takeover_sleep1000", "Takeover, ActiveMQ lockAcquireSleepInterval=1000 (ms)", "hamq p50 ≤ 250, max ≤ 500"),
    ("takeover_100k", "Takeover with 100,000 pending messages (ms)", "hamq p50 ≤ 250, max ≤ 500"),
    ("startup_0", "Startup to CONNECT, empty store (s)", "—"),
    ("startup_10k", "Startup to CONNECT, 10k pending (s)", "—"),
    ("startup_100k", "Startup to CONNECT, 100k pending (s)", "—"),
    ("startup_1M", "Startup to CONNECT, 1M pending (s)", "≤ empty store + 1 s"),
    ("rss_0", "RSS after startup, empty store (MiB)", "—"),
    ("rss_10k", "RSS after startup, 10k pending (MiB)", "—"),
    ("rss_100k", "RSS after startup, 100k pending (MiB)", "—"),
    ("rss_1M", "RSS after startup, 1M pending (MiB)", "≤ 256 MiB"),
    ("drill_missing", "Drill, kill -9 of the master during a failover produce: missing", "0"),
    ("drill_duplicates", "Drill, kill -9 of the master during a failover produce: duplicates", "—"),
]
HEADERS = {"hamq": "hamq", "ActiveMQ": "ActiveMQ Classic", "coilmq": "coilmq"}
HIGHER_IS_BETTER = {"send_persistent_1", "send_persistent_8", "consume_individual", "send_nonpersistent"}


def fmt(v: float) -> str:
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def center(cell: dict, metric: str) -> float | None:
    """The figure ratios and goals use: p50 for takeovers, the median otherwise."""
    if not cell or cell.get("status") != "ok" or not cell.get("n"):
        return None
    if "count" in cell:
        return cell["count"]
    return cell["p50"] if metric.startswith("takeover") else cell["median"]


def cell_text(cell: dict | None, metric: str, notes: list) -> str:
    if cell is None:
        return "—"
    status = cell.get("status")
    if status == "ok":
        if "count" in cell:
            extra = f" of {cell['messages']:,} ({cell['kills']} kills)" if "messages" in cell else ""
            return f"**{cell['count']}**{extra}"
        if metric.startswith("takeover"):
            text = f"{fmt(cell['p50'])} / {fmt(cell['p99'])} / {fmt(cell['max'])}"
        else:
            text = f"{fmt(cell['min'])} / **{fmt(cell['median'])}** / {fmt(cell['max'])}"
        if cell.get("note"):
            if cell["note"] not in notes:
                notes.append(cell["note"])
            text += f" [{notes.index(cell['note']) + 1}]"
        return text
    reason = cell.get("reason", "")
    if reason not in notes:
        notes.append(reason)
    return f"{status} [{notes.index(reason) + 1}]"


def goal_check(metric: str, results: dict) -> str:
    row = results.get(metric, {})
    h, a = center(row.get("hamq"), metric), center(row.get("ActiveMQ"), metric)
    if h is None:
        return ""
    if metric in ("send_persistent_1", "send_persistent_8", "consume_individual"):
        need = {"send_persistent_1": 1.5, "send_persistent_8": 3.0, "consume_individual": 1.0}[metric]
        return "" if a is None else ("met" if h / a >= need else "not met")
    if metric.startswith("takeover"):
        cell = row["hamq"]
        return "met" if cell["p50"] <= 250 and cell["max"] <= 500 else "not met"
    if metric == "startup_1M":
        empty = center(results.get("startup_0", {}).get("hamq"), "startup_0")
        return "" if empty is None else ("met" if h <= empty + 1.0 else "not met")
    if metric == "rss_1M":
        return "met" if h <= 256 else "not met"
    if metric == "drill_missing":
        return "met" if h == 0 else "not met"
    return ""


def ratio_text(metric: str, results: dict) -> str:
    row = results.get(metric, {})
    h, a = center(row.get("hamq"), metric), center(row.get("ActiveMQ"), metric)
    if h is None or a is None or metric.startswith("drill") or a == 0:
        return "—"
    return f"{h / a:.2f}×"


def markdown(data: dict) -> str:
    results, notes = data["results"], []
    m = data["machine"]
    lines = [
        f"# hamq benchmarks, {data['date']}",
        "",
        f"Machine: {m['cores']} cores, {m['cpu']}, {m['memory']}, Linux {m['kernel']}; "
        f"Python {m['python']}, {m['java']}, ActiveMQ Classic {m['activemq']}, coilmq {m['coilmq']}, "
        f"stomp.py {m['stomp.py']}; hamq at commit {m['hamq_commit']}. Mode: {data['mode']}.",
        "",
        "Cells: min / **median** / max over repeats (takeover: p50 / p99 / max over trials). "
        "The ratio compares hamq's median (takeover: p50) with ActiveMQ's. All brokers ran in the "
        "same run on 127.0.0.1 with stomp.py as the client and 1 KiB bodies. For times and RSS a "
        "ratio below 1 means hamq is faster / smaller.",
        "",
        f"| Benchmark | Goal | {' | '.join(HEADERS[b] for b in BROKERS)} | hamq / ActiveMQ | Goal met |",
        "|---|---|" + "---|" * len(BROKERS) + "---|---|",
    ]
    for metric, label, goal in ROWS:
        if metric not in results:
            continue
        row = results[metric]
        cells = [cell_text(row.get(b), metric, notes) for b in BROKERS]
        lines.append(f"| {label} | {goal} | {' | '.join(cells)} | {ratio_text(metric, results)} | "
                     f"{goal_check(metric, results)} |")
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"{i + 1}. {note}" for i, note in enumerate(notes)]
    if data.get("notes"):
        lines += ["", "How each figure was taken:", ""]
        lines += [f"- **{k}**: {v}" for k, v in data["notes"].items()]
    load = data.get("loadavg") or {}
    if load.get("n"):
        lines += ["", f"Machine load during the run (1-minute load average, sampled every 10 s on "
                      f"{m['cores']} cores): min {load['min']:.1f} / median {load['median']:.1f} / "
                      f"max {load['max']:.1f}."]
    lines += ["", f"Command: `{data['command']}` ({data['elapsed_s']:.0f} s)."]
    return "\n".join(lines) + "\n"


def _run(argv: list) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return (out.stdout + out.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine() -> dict:
    cpu = "unknown CPU"
    mem = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.0f} GB RAM"
    except OSError:
        pass
    java = _run(["java", "-version"]).splitlines()
    from importlib.metadata import PackageNotFoundError, version

    def ver(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return {
        "cores": os.cpu_count(), "cpu": cpu, "memory": mem, "kernel": platform.release(),
        "python": platform.python_version(), "java": java[0] if java else "no java",
        "activemq": _run(["dpkg-query", "-W", "-f=${Version}", "activemq"]) or "not installed",
        "coilmq": ver("coilmq"), "stomp.py": ver("stomp.py"),
        "hamq_commit": _run(["git", "rev-parse", "--short", "HEAD"]) or "unknown",
    }


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def plot(data: dict, path: Path) -> str | None:
    """Startup time and RSS against store size for hamq and ActiveMQ; returns a hint on failure."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no PNG (pip install matplotlib)"
    results = data["results"]
    sizes = [(k.split("_", 1)[1]) for k in ("startup_0", "startup_10k", "startup_100k", "startup_1M")
             if k in results]
    if not sizes:
        return "no startup figures: no PNG"
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, prefix, ylabel in ((axes[0], "startup", "startup to CONNECT (s)"), (axes[1], "rss", "RSS (MiB)")):
        for broker, style in (("hamq", "o-"), ("ActiveMQ", "s--")):
            xs, ys, lo, hi = [], [], [], []
            for i, size in enumerate(sizes):
                cell = results.get(f"{prefix}_{size}", {}).get(broker)
                if cell and cell.get("status") == "ok":
                    xs.append(i)
                    ys.append(cell["median"])
                    lo.append(cell["median"] - cell["min"])
                    hi.append(cell["max"] - cell["median"])
            if xs:
                ax.errorbar(xs, ys, yerr=[lo, hi], fmt=style, capsize=4, label=HEADERS[broker])
        ax.set_xticks(range(len(sizes)))
        ax.set_xticklabels(sizes)
        ax.set_xlabel("pending 1 KiB messages in the store")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if "rss_1M" in results:
        axes[1].axhline(256, color="grey", linestyle=":", linewidth=1)
    fig.suptitle(f"Startup and memory against store size ({data['date']})")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return None


def write_all(data: dict, results_dir: Path, stamp: str) -> dict:
    """Write <stamp>.md/.json/.png and latest.md/.png; returns the paths written."""
    results_dir.mkdir(parents=True, exist_ok=True)
    md = markdown(data)
    paths = {"md": results_dir / f"{stamp}.md", "json": results_dir / f"{stamp}.json"}
    write_atomic(paths["json"], json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    png = results_dir / f"{stamp}.png"
    hint = plot(data, png)
    if hint is None:
        paths["png"] = png
        md += f"\n![startup time and RSS against store size]({png.name})\n"
        latest_png = results_dir / "latest.png"
        write_atomic_bytes(latest_png, png.read_bytes())
    else:
        md += f"\n({hint})\n"
    write_atomic(paths["md"], md)
    write_atomic(results_dir / "latest.md", md.replace(f"]({png.name})", "](latest.png)"))
    paths["markdown_text"] = md
    return paths


def write_atomic_bytes(path: Path, blob: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)
