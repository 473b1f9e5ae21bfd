"""STOMP protocol behaviour of the engine: CONNECT, versions, errors, receipts, heart-beats."""

from test_engine_support import Harness

from hamq.stomp.codec import HEARTBEAT, Frame, ProtocolError


def test_connect_negotiates_highest_common_version_and_echoes_heartbeats():
    h = Harness()
    connected = h.connect("c", version="1.1,1.2", heart_beat="4000,6000")
    assert connected.get("version") == "1.2"
    assert connected.get("heart-beat") == "6000,4000"
    assert connected.get("server").startswith("hamq/")
    assert connected.get("session").startswith("ID:")


def test_connect_without_accept_version_is_stomp_1_0():
    h = Harness()
    assert h.connect("c", version="1.0").get("version") == "1.0"


def test_unsupported_version_is_a_fatal_error():
    h = Harness()
    h.broker.connection_made("c")
    h.inbox["c"], h.closed["c"], h.heartbeats["c"] = [], False, 0
    h.send("c", "CONNECT", accept_version="2.0")
    error = h.take("c")[0]
    assert error.command == "ERROR"
    assert "2.0" in error.get("message") and "Fix:" in error.get("message")
    assert h.closed["c"]


def test_frame_before_connect_is_refused_and_closed():
    h = Harness()
    h.broker.connection_made("c")
    h.inbox["c"], h.closed["c"], h.heartbeats["c"] = [], False, 0
    h.send("c", "SEND", destination="/queue/a", receipt="r1")
    error = h.take("c")[0]
    assert error.command == "ERROR"
    assert "before CONNECT" in error.get("message")
    assert error.get("receipt-id") == "r1"
    assert h.closed["c"]


def test_unknown_command_gets_error_with_receipt_and_connection_stays_open():
    h = Harness()
    h.connect("c")
    h.send("c", "FROB", receipt="r9")
    error = h.take("c")[0]
    assert error.command == "ERROR" and "FROB" in error.get("message")
    assert error.get("receipt-id") == "r9"
    assert not h.closed["c"]
    h.send("c", "SEND", destination="/queue/a", receipt="r10")
    assert h.take("c")[0].get("receipt-id") == "r10"


def test_protocol_error_from_decoder_is_reported_and_fatal_one_closes():
    h = Harness()
    h.connect("c")
    h.connect("other")
    h.broker.protocol_error("c", ProtocolError("frame headers are not valid UTF-8", fatal=True))
    h.pump()
    error = h.take("c")[0]
    assert error.command == "ERROR" and "UTF-8" in error.get("message")
    assert h.closed["c"]
    h.send("other", "SEND", destination="/queue/a", receipt="ok")
    assert h.take("other")[0].command == "RECEIPT"


def test_receipts_on_every_frame_kind():
    h = Harness()
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/a", id="s", ack="client", receipt="1")
    h.send("c", "BEGIN", transaction="t", receipt="2")
    h.send("c", "SEND", destination="/queue/a", transaction="t", receipt="3")
    h.send("c", "ABORT", transaction="t", receipt="4")
    h.send("c", "UNSUBSCRIBE", id="s", receipt="5")
    h.send("c", "DISCONNECT", receipt="6")
    receipts = [f.get("receipt-id") for f in h.take("c", "RECEIPT")]
    assert receipts == ["1", "2", "3", "4", "5", "6"]
    assert h.closed["c"]


def test_send_errors_name_the_problem():
    h = Harness()
    h.connect("c")
    h.send("c", "SEND", receipt="x")
    assert "no destination" in h.take("c")[0].get("message")
    h.send("c", "SEND", destination="/exchange/a")
    assert "unsupported destination" in h.take("c")[0].get("message")
    h.send("c", "SUBSCRIBE", destination="/queue/a")
    assert "no id header" in h.take("c")[0].get("message")
    h.send("c", "SUBSCRIBE", destination="/queue/a", id="s", ack="sometimes")
    assert "ack mode" in h.take("c")[0].get("message")
    h.send("c", "SUBSCRIBE", destination="/queue/a", id="s", **{"activemq.prefetchSize": "0"})
    assert "prefetchSize" in h.take("c")[0].get("message")
    assert not h.closed["c"]


def test_second_connect_is_fatal():
    h = Harness()
    h.connect("c")
    h.send("c", "CONNECT", accept_version="1.2")
    assert "already connected" in h.take("c")[0].get("message")
    assert h.closed["c"]


def test_duplicate_client_id_is_refused():
    h = Harness()
    h.connect("a", client_id="same")
    h.broker.connection_made("b")
    h.inbox["b"], h.closed["b"], h.heartbeats["b"] = [], False, 0
    h.send("b", "CONNECT", accept_version="1.2", client_id="same")
    assert "already connected" in h.take("b")[0].get("message")
    assert h.closed["b"] and not h.closed["a"]


def test_heartbeats_are_sent_and_silent_client_is_closed():
    h = Harness()
    h.connect("c", heart_beat="1000,500")
    # We send every 500 ms; we expect the client every 1000 ms (x grace 1.5).
    h.clock.now += 0.6
    h.broker.tick()
    h.pump()
    assert h.heartbeats["c"] == 1
    h.broker.receive("c", HEARTBEAT)
    h.clock.now += 1.2  # within 1000 ms x 1.5 of the last heart-beat
    h.broker.tick()
    h.pump()
    assert not h.closed["c"]
    h.clock.now += 0.5  # 1.7 s of silence
    h.broker.tick()
    h.pump()
    assert h.closed["c"]


def test_stomp_1_0_has_no_heartbeats():
    h = Harness()
    connected = h.connect("c", version="1.0", heart_beat="1000,1000")
    assert connected.get("heart-beat") == "0,0"
    h.clock.now += 100
    h.broker.tick()
    h.pump()
    assert not h.closed["c"] and h.heartbeats["c"] == 0


def test_transactions_unknown_and_duplicate_ids_are_errors():
    h = Harness()
    h.connect("c")
    h.send("c", "COMMIT", transaction="nope")
    assert "unknown transaction" in h.take("c")[0].get("message")
    h.send("c", "BEGIN", transaction="t1")
    h.send("c", "BEGIN", transaction="t1")
    assert "already open" in h.take("c")[0].get("message")
    h.send("c", "SEND", destination="/queue/a", transaction="zz")
    assert "unknown transaction" in h.take("c")[0].get("message")
    h.send("c", "BEGIN")
    assert "no transaction header" in h.take("c")[0].get("message")


def test_error_message_survives_stomp_1_0_encoding():
    from hamq.stomp.codec import encode_frame

    h = Harness()
    h.connect("c", version="1.0")
    h.raw("c", Frame("SEND", [("destination", "nowhere")]))
    error = h.take("c")[0]
    assert encode_frame(error, "1.0").startswith(b"ERROR\n")


def test_message_frame_fast_encoding_matches_the_codec():
    from hamq.core.messages import Message, MessageFrame
    from hamq.stomp.codec import FrameDecoder, encode_frame

    message = Message("id:1", "/queue/a", [("weird:key", "line\nbreak\\"), ("plain", "v")], b"bo\x00dy", True)
    for version in ("1.1", "1.2"):
        frame = MessageFrame([("subscription", "s:1"), ("message-id", "id:1")], message)
        assert frame.encode(version) == encode_frame(frame, version)
        decoder = FrameDecoder(version)
        decoder.feed(frame.encode(version))
        decoded = decoder.next_event()
        assert decoded.headers == frame.headers and decoded.body == b"bo\x00dy"


def test_decoder_handles_crlf_frames_pipelined_with_lf_frames():
    from hamq.stomp.codec import FrameDecoder

    decoder = FrameDecoder("1.2")
    data = (b"SEND\r\ndestination:/queue/a\r\n\r\none\x00"
            b"SEND\ndestination:/queue/b\n\ntwo\n\n\x00"
            b"SEND\r\ndestination:/queue/c\r\n\r\nthree\x00") * 50
    decoder.feed(data)
    frames = list(decoder)
    assert [(f.get("destination"), f.body) for f in frames[:3]] == [
        ("/queue/a", b"one"), ("/queue/b", b"two\n\n"), ("/queue/c", b"three")]
    assert len(frames) == 150
