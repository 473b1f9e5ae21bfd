#!/usr/bin/python3
# Copyright: (c) 2026, hamq maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kill the master at a precise point of the drill's load, from the master's own host.

Why a script: Ansible needs seconds per task on a busy controller, long enough
for a small load to finish before the kill. This watcher polls the master's
status endpoint every 20 ms and runs the kill command the moment the drill's
queue has seen ``--after`` messages, then prints one JSON line with the time of
the kill. Without a command it only waits (host_stop kills from the controller).
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import subprocess
import sys
import time

try:
    from urllib.request import urlopen
except ImportError:  # pragma: no cover - Python 2 is not supported by hamq
    sys.exit("python3 required")


def enqueued(status_url, queue):
    with urlopen(status_url, timeout=2) as response:
        status = json.loads(response.read().decode("utf-8"))
    short = queue.split("/", 2)[-1] if queue.startswith("/queue/") else queue
    for dest in status.get("destinations") or []:
        if dest.get("name") in (queue, short, "queue://" + short):
            return int(dest.get("enqueued") or 0), status.get("role")
    return 0, status.get("role")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--status-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--after", type=int, required=True, help="kill once this many messages were enqueued")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the kill command")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    deadline = time.time() + args.timeout
    count, role, error = 0, None, None
    while time.time() < deadline:
        try:
            count, role = enqueued(args.status_url, args.queue)
            error = None
        except (OSError, ValueError) as exc:
            error = str(exc)
        if count >= args.after:
            break
        time.sleep(0.02)
    else:
        print(json.dumps({"triggered": False, "enqueued": count, "role": role, "error": error or
                          "only %d of %d messages were enqueued within %.0f s" % (count, args.after, args.timeout)}))
        return 1
    killed_at = time.time()
    rc = subprocess.call(command) if command else 0
    print(json.dumps({"triggered": True, "killed_at": killed_at, "enqueued": count, "role": role,
                      "command": command, "rc": rc}))
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
