#!/usr/bin/env python3
"""Watch the brokers' STOMP ports during a failover drill.

A slave listens on nothing and a master opens its port only once it holds the
lock and has recovered the store, so the first successful TCP connect to a new
broker is the moment clients can get in again.  Ansible polls far too slowly
for that, so this runs on the drill's client host next to the producer and
consumer (same clock as their rate logs) and writes one JSON line per change:
``{"t": <unix time>, "node": NAME, "open": true|false}``.

Stdlib only (runs on the target host's python3).  Stops when --stop-file
appears or after --max-seconds.

    drill_port_watch.py --out ports.jsonl --stop-file stop broker1=10.0.0.1:61613 ...
"""

import argparse
import json
import os
import socket
import sys
import threading
import time


def parse_endpoint(text):
    """NAME=HOST:PORT -> (name, host, port); the error names the fix."""
    name, sep, address = text.partition("=")
    host, colon, port = address.rpartition(":")
    if not sep or not colon or not name or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(
            "endpoint %r is not NAME=HOST:PORT. Fix: pass e.g. broker1=broker1.example:61613" % text)
    return name, host.strip("[]"), int(port)


def is_open(host, port, timeout):
    """True when a TCP connect succeeds; the connection is closed at once."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Watch:
    """One thread per broker, so a dead host's connect timeout delays nobody else."""

    def __init__(self, out, interval, timeout):
        self.out = out
        self.interval = interval
        self.timeout = timeout
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def record(self, node, state, now):
        with self.lock:
            self.out.write(json.dumps({"t": round(now, 3), "node": node, "open": state}) + "\n")
            self.out.flush()

    def run_one(self, name, host, port):
        last = None
        while not self.stop.is_set():
            started = time.time()
            state = is_open(host, port, self.timeout)
            if state != last:
                # An open port was open when the connect returned; a closed one
                # closed somewhere before the attempt started.
                self.record(name, state, time.time() if state else started)
                last = state
            self.stop.wait(max(0.0, self.interval - (time.time() - started)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoints", nargs="+", type=parse_endpoint, metavar="NAME=HOST:PORT")
    parser.add_argument("--out", required=True, help="JSON lines file to write")
    parser.add_argument("--stop-file", required=True, help="stop once this file exists")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between connects (default 0.05)")
    parser.add_argument("--timeout", type=float, default=0.2, help="connect timeout in seconds (default 0.2)")
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="give up after this long")
    args = parser.parse_args(argv)
    with open(args.out, "w", encoding="utf-8") as out:
        watch = Watch(out, args.interval, args.timeout)
        threads = [threading.Thread(target=watch.run_one, args=ep, daemon=True) for ep in args.endpoints]
        for thread in threads:
            thread.start()
        deadline = time.time() + args.max_seconds
        while time.time() < deadline and not os.path.exists(args.stop_file):
            time.sleep(0.2)
        watch.stop.set()
        for thread in threads:
            thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
