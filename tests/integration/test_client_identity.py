"""``hamq consume`` counts by the producer's identity, not by the broker's message-id (issue 15, case 10).

Every MESSAGE now carries a broker-assigned, unique ``message-id``; the
producer's own id travels as ``client-message-id``. A message stored twice is
two broker ids but one producer id: a drain must call it a duplicate. A
message with no producer identity cannot be checked and is counted apart.
"""

from __future__ import annotations

import json
import subprocess
import sys

from raw_stomp import RawStomp

HAMQ = [sys.executable, "-m", "hamq"]


def _send(port: int, frames) -> None:
    c = RawStomp(port, timeout=30)
    assert c.connect(host="x")[0] == "CONNECTED"
    for i, headers in enumerate(frames):
        c.send("SEND", b"body", destination="/queue/ident", persistent="true", receipt=f"r{i}", **headers)
        assert c.frame()[0] == "RECEIPT"
    c.close()


def test_consume_counts_by_client_message_id_and_apart_what_it_cannot_identify(broker):
    # No _AMQ_DUPL_ID: the broker stores both copies of "app-7", as it must.
    _send(broker.stomp_port, [{"message_id": "app-7"}, {"message_id": "app-7"}, {"message_id": "app-8"}, {}])
    out = subprocess.run(
        HAMQ + ["consume", f"tcp://127.0.0.1:{broker.stomp_port}", "/queue/ident", "--count", "4", "--timeout", "5"],
        capture_output=True, text=True, timeout=120,
    )
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["deliveries"] == 4, summary
    assert summary["identity"] == "client-message-id", summary
    assert (summary["received"], summary["duplicates"], summary["unidentified"]) == (2, 1, 1), summary
