"""The status endpoint: ``GET /status`` (JSON) and ``GET /metrics`` (Prometheus).

It runs in every role, so Ansible and operators can ask a slave who it is
waiting for and a master how deep its queues are. Deliberately tiny: a
request line, headers ignored, one response, close.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Callable, List, Optional

log = logging.getLogger("hamq.status")

ROLES = ("starting", "slave", "master", "stopping")
MAX_REQUEST_BYTES = 8192
READ_TIMEOUT_S = 5.0


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(status: dict) -> str:
    """The /status figures in Prometheus text exposition format 0.0.4."""
    lines: List[str] = []
    broker = _label(status.get("brokerName", ""))
    node = _label(status.get("nodeName", ""))
    base = f'broker="{broker}",node="{node}"'

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    family("hamq_role", "gauge", "1 for the role this broker is in, 0 for the others.")
    for role in ROLES:
        lines.append(f'hamq_role{{{base},role="{role}"}} {1 if status.get("role") == role else 0}')
    family("hamq_epoch", "gauge", "Fencing epoch of the current master term (-1 when not master).")
    epoch = status.get("epoch")
    lines.append(f"hamq_epoch{{{base}}} {epoch if epoch is not None else -1}")
    family("hamq_connections", "gauge", "Connected STOMP clients.")
    lines.append(f"hamq_connections{{{base}}} {status.get('connections', 0)}")
    destinations = status.get("destinations", [])
    for metric, field, kind, help_text in (
        ("hamq_destination_depth", "depth", "gauge", "Messages not yet acknowledged."),
        ("hamq_destination_consumers", "consumers", "gauge", "Active consumers."),
        ("hamq_destination_enqueued_total", "enqueued", "counter", "Messages received since start."),
        ("hamq_destination_dequeued_total", "dequeued", "counter", "Messages consumed since start."),
    ):
        family(metric, kind, help_text)
        for d in destinations:
            labels = f'{base},destination="{_label(d["name"])}",type="{_label(d.get("type", "queue"))}"'
            lines.append(f"{metric}{{{labels}}} {d.get(field, 0)}")
    return "\n".join(lines) + "\n"


class StatusServer:
    """Serves ``provider()`` (a dict) as /status and /metrics."""

    def __init__(self, host: str, port: int, provider: Callable[[], dict]):
        self.host = host
        self.port = port
        self.provider = provider
        self._server: Optional[asyncio.AbstractServer] = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        sockname = self._server.sockets[0].getsockname()
        self.port = sockname[1]
        log.info("status endpoint listening on http://%s:%d/status", self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
            writer.close()
            return
        try:
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, target, _ = request_line.split(" ", 2)
        except ValueError:
            await self._respond(writer, 400, "text/plain", "malformed HTTP request line\n")
            return
        path = target.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            await self._respond(writer, 405, "text/plain", "only GET is supported\n")
        elif path in ("/status", "/status/"):
            body = json.dumps(self.provider(), indent=1, sort_keys=True) + "\n"
            await self._respond(writer, 200, "application/json", body, method == "HEAD")
        elif path == "/metrics":
            body = render_metrics(self.provider())
            await self._respond(writer, 200, "text/plain; version=0.0.4; charset=utf-8", body, method == "HEAD")
        else:
            await self._respond(writer, 404, "text/plain", "not found; try /status or /metrics\n")

    @staticmethod
    async def _respond(writer: asyncio.StreamWriter, code: int, content_type: str, body: str,
                       head_only: bool = False) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}[code]
        data = body.encode("utf-8")
        header = (f"HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\n"
                  f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode("ascii")
        try:
            writer.write(header if head_only else header + data)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
