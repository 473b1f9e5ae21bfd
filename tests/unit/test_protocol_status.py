"""The status endpoint: JSON, Prometheus text, and refusals, over a loopback socket."""

import asyncio
import json

from hamq.status import StatusServer, render_metrics

STATUS = {
    "role": "slave",
    "brokerName": "orders",
    "nodeName": 'b"1',
    "epoch": None,
    "connections": 0,
    "destinations": [{"name": "a\\b", "type": "queue", "depth": 3, "consumers": 1, "enqueued": 5, "dequeued": 2}],
}


def test_metrics_text_escapes_labels_and_marks_the_role():
    text = render_metrics(STATUS)
    assert 'hamq_role{broker="orders",node="b\\"1",role="slave"} 1' in text
    assert 'hamq_role{broker="orders",node="b\\"1",role="master"} 0' in text
    assert 'hamq_epoch{broker="orders",node="b\\"1"} -1' in text
    assert 'hamq_destination_depth{broker="orders",node="b\\"1",destination="a\\\\b",type="queue"} 3' in text
    assert "# TYPE hamq_destination_enqueued_total counter" in text
    assert text.endswith("\n")


async def _get(port, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    data = await reader.read()
    writer.close()
    return data


def test_status_server_serves_json_metrics_and_errors():
    async def scenario():
        server = StatusServer("127.0.0.1", 0, lambda: STATUS)
        await server.start()
        try:
            status = await _get(server.port, b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
            metrics = await _get(server.port, b"GET /metrics HTTP/1.0\r\n\r\n")
            missing = await _get(server.port, b"GET /nope HTTP/1.1\r\n\r\n")
            post = await _get(server.port, b"POST /status HTTP/1.1\r\n\r\n")
        finally:
            await server.close()
        return status, metrics, missing, post

    status, metrics, missing, post = asyncio.run(scenario())
    head, body = status.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and b"application/json" in head
    assert json.loads(body)["role"] == "slave"
    assert metrics.startswith(b"HTTP/1.1 200") and b"hamq_role" in metrics
    assert missing.startswith(b"HTTP/1.1 404")
    assert post.startswith(b"HTTP/1.1 405")
