#!/usr/bin/env python3
"""A minimal STOMP 1.2 client (stdlib only) for the scheduler scenario.

It is independent of hamq's own client on purpose: the scenario checks the
broker from the outside, with nothing but the wire protocol.

  stomp_probe.py send HOSTS PORT DEST [--header K=V ...] [--body TEXT]
      sends one persistent message with a receipt; prints {"sent_at", "receipt", "host"}
  stomp_probe.py receive HOSTS PORT DEST --until EPOCH_SECONDS
      acks and records every message until the time; prints {"messages": [...], "host"}

HOSTS is a comma-separated list: the probe connects to the first that accepts
(only a master listens), retrying for --connect-timeout seconds.
"""

import argparse
import json
import socket
import sys
import time


def connect(hosts, port, timeout):
    """Connect to the first of ``hosts`` that accepts: the master."""
    deadline = time.time() + timeout
    errors = {}
    while True:
        for host in hosts.split(","):
            try:
                sock = socket.create_connection((host, port), timeout=5)
            except OSError as exc:
                errors[host] = str(exc)
                continue
            write(sock, "CONNECT", {"accept-version": "1.2", "host": host, "heart-beat": "0,0"})
            frame = read(sock, time.time() + 10)
            if frame is None or frame[0] != "CONNECTED":
                sys.exit("stomp_probe: no CONNECTED from %s:%s: %r" % (host, port, frame))
            return sock, host
        if time.time() > deadline:
            sys.exit("stomp_probe: no broker accepted on port %s within %s s: %s" % (port, timeout, errors))
        time.sleep(0.2)


def escape(value):
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace(":", "\\c")


def write(sock, command, headers, body=b""):
    lines = [command] + ["%s:%s" % (escape(k), escape(v)) for k, v in headers.items()]
    if body:
        lines.append("content-length:%d" % len(body))
    sock.sendall(("\n".join(lines) + "\n\n").encode() + body + b"\0")


_buffer = bytearray()


def read(sock, deadline):
    """One frame (command, headers, body) or None at the deadline."""
    while True:
        while _buffer[:1] in (b"\n", b"\r"):
            del _buffer[:1]
        end = _buffer.find(b"\n\n")
        if end >= 0:
            head = _buffer[:end].decode().replace("\r", "").split("\n")
            headers = {}
            for line in head[1:]:
                key, _, value = line.partition(":")
                headers.setdefault(key, value)
            length = int(headers.get("content-length", -1))
            start = end + 2
            stop = start + length if length >= 0 else _buffer.find(b"\0", start)
            if stop >= 0 and len(_buffer) > stop:
                body = bytes(_buffer[start:stop])
                del _buffer[: stop + 1]
                return head[0], headers, body
        remaining = deadline - time.time()
        if remaining <= 0:
            return None
        sock.settimeout(min(remaining, 1.0))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            raise ConnectionError("connection closed")
        _buffer.extend(chunk)


def send(args):
    sock, host = connect(args.hosts, args.port, args.connect_timeout)
    headers = {"destination": args.destination, "persistent": "true", "receipt": "probe-1"}
    headers.update(h.split("=", 1) for h in args.header)
    sent_at = time.time()
    write(sock, "SEND", headers, args.body.encode())
    frame = read(sock, time.time() + 30)
    if frame is None or frame[0] != "RECEIPT":
        sys.exit("stomp_probe: no RECEIPT for the SEND: %r" % (frame,))
    print(json.dumps({"sent_at": sent_at, "receipt": frame[1].get("receipt-id"), "host": host}))


def receive(args):
    sock, host = connect(args.hosts, args.port, args.connect_timeout)
    write(sock, "SUBSCRIBE", {"destination": args.destination, "id": "probe", "ack": "client-individual"})
    messages = []
    while time.time() < args.until:
        frame = read(sock, args.until)
        if frame is None:
            break
        command, headers, body = frame
        if command == "ERROR":
            sys.exit("stomp_probe: ERROR frame: %r %r" % (headers, body))
        if command != "MESSAGE":
            continue
        messages.append(
            {"received_at": time.time(), "headers": headers, "body": body.decode(errors="replace")}
        )
        write(sock, "ACK", {"id": headers.get("ack", headers.get("message-id", ""))})
    print(json.dumps({"messages": messages, "host": host}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    for name in ("send", "receive"):
        p = sub.add_parser(name)
        p.add_argument("hosts", metavar="HOSTS")
        p.add_argument("port", type=int)
        p.add_argument("destination")
        p.add_argument("--connect-timeout", type=float, default=60.0)
        if name == "send":
            p.add_argument("--header", action="append", default=[], metavar="K=V")
            p.add_argument("--body", default="scheduled probe")
        else:
            p.add_argument("--until", type=float, required=True, metavar="EPOCH_SECONDS")
    args = parser.parse_args()
    send(args) if args.action == "send" else receive(args)


if __name__ == "__main__":
    main()
