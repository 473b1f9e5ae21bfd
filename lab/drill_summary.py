#!/usr/bin/env python3
"""Print the headline figures of a failover drill report (drill-report.json),
so `make lab` ends with the verdict rather than pages of Ansible output."""

import json
import sys

FIELDS = [
    ("old master", "old_master"),
    ("new master", "new_master"),
    ("kill method", "kill_method"),
    ("takeover, kill -> CONNECT (s)", "takeover_seconds"),
    ("client outage (s)", "client_outage_seconds"),
    ("old master rejoined as", "old_master_rejoined_as"),
    ("messages", "messages"),
    ("receipted", "receipted"),
    ("received", "received"),
    ("missing", "missing"),
    ("duplicates", "duplicates"),
    ("redelivered", "redelivered"),
    ("counted by", "identity"),
    ("could not be identified", "unidentified"),
]


def main(path: str) -> int:
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"drill_summary: cannot read {path}: {exc}. Fix: run the drill (make lab-drill) first.")
        return 1
    print(f"\n== failover drill {report.get('run', '?')} ({path})")
    for label, key in FIELDS:
        print(f"  {label:<32} {report.get(key)}")
    failed = [name for name, ok in (report.get("checks") or {}).items() if not ok]
    print("  verdict                          " + ("PASSED" if report.get("passed") else f"FAILED: {failed}"))
    return 0 if report.get("passed") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "drill-report.json"))
