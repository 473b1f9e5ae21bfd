#!/usr/bin/env python3
"""Kill the master's VM and time how long until another broker accepts STOMP.

The figure is taken from the controller, as a client sees it: from the instant
before the qemu process gets SIGKILL to the first STOMP CONNECTED from any of
the other brokers (a slave does not listen, so a refused connection means "not
master yet").  Under emulation the VMs' clocks are not trusted for this.

    takeover.py --kill lab/vm/kill_vm.sh broker1 STATE --keep-disk \
                --broker 10.231.7.12:61613 [--broker ...] [--timeout 180]

Prints one JSON line: killed_at, connected_at, takeover_s, new_master.
"""

import argparse
import json
import socket
import subprocess
import sys
import time

CONNECT = b"CONNECT\naccept-version:1.2\nhost:hamq\n\n\x00"


def stomp_connected(host: str, port: int, timeout: float) -> bool:
    """True when the broker at host:port answers CONNECT with CONNECTED."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(CONNECT)
            reply = b""
            while b"\x00" not in reply and len(reply) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
            if reply.lstrip(b"\r\n").startswith(b"CONNECTED"):
                sock.sendall(b"DISCONNECT\n\n\x00")
                return True
    except OSError:
        pass
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", action="append", required=True, help="host:port of a surviving broker")
    parser.add_argument("--timeout", type=float, default=180.0, help="give up after this many seconds")
    parser.add_argument(
        "--kill", nargs=argparse.REMAINDER, required=True, help="the command that kills the VM"
    )
    args = parser.parse_args()
    brokers = []
    for item in args.broker:
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            parser.error(f"--broker {item!r} is not host:port. Fix: e.g. --broker 10.231.7.12:61613")
        brokers.append((host, int(port)))

    killed_at = time.time()
    subprocess.run(args.kill, check=True, stdout=subprocess.DEVNULL)
    deadline = killed_at + args.timeout
    while time.time() < deadline:
        for host, port in brokers:
            if stomp_connected(host, port, timeout=2.0):
                connected_at = time.time()
                print(
                    json.dumps(
                        {
                            "killed_at": killed_at,
                            "connected_at": connected_at,
                            "takeover_s": round(connected_at - killed_at, 2),
                            "new_master": f"{host}:{port}",
                        }
                    )
                )
                return 0
        time.sleep(0.1)
    print(
        json.dumps(
            {
                "killed_at": killed_at,
                "connected_at": None,
                "takeover_s": None,
                "error": f"no broker accepted STOMP within {args.timeout} s",
            }
        )
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
