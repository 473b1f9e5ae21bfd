"""Property-based tests of the STOMP codec: round trips, arbitrary chunking, garbage input."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hamq.stomp.codec import HEARTBEAT, Frame, FrameDecoder, ProtocolError, encode_frame

COMMANDS = ["SEND", "MESSAGE", "SUBSCRIBE", "ACK", "ERROR", "RECEIPT", "BEGIN"]


def header_text(version):
    # 1.0 cannot carry newlines; 1.1 cannot carry CR; 1.2 can carry anything.
    excluded = {"1.0": "\n\r\x00", "1.1": "\r\x00", "1.2": "\x00"}[version]
    return st.text(st.characters(blacklist_characters=excluded, blacklist_categories=("Cs",)), max_size=20)


@st.composite
def frames(draw, version):
    command = draw(st.sampled_from(COMMANDS))
    key = header_text(version).filter(lambda k: k and k != "content-length")
    if version == "1.0":
        key = key.filter(lambda k: ":" not in k)
    headers = draw(st.lists(st.tuples(key, header_text(version)), max_size=8))
    body = draw(st.binary(max_size=300))
    return Frame(command, headers, body)


@settings(max_examples=100, deadline=None)
@given(st.data(), st.sampled_from(["1.0", "1.1", "1.2"]))
def test_round_trip_in_arbitrary_chunks(data, version):
    sent = data.draw(st.lists(frames(version), min_size=1, max_size=4))
    wire = b"".join(encode_frame(f, version) + b"\n" for f in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    decoder = FrameDecoder(version)
    got = []
    start = 0
    for cut in cuts + [len(wire)]:
        decoder.feed(wire[start:cut])
        start = cut
        got.extend(e for e in decoder if e is not HEARTBEAT)
    assert len(got) == len(sent)
    for before, after in zip(sent, got):
        assert after.command == before.command
        assert after.body == before.body
        expected = list(before.headers)
        if b"\x00" in before.body:
            expected.append(("content-length", str(len(before.body))))
        assert after.headers == expected


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400), st.sampled_from(["1.0", "1.1", "1.2"]))
def test_garbage_only_ever_raises_protocol_error(data, version):
    decoder = FrameDecoder(version, max_frame_size=256, max_headers=5, max_header_length=64)
    decoder.feed(data)
    try:
        for _ in range(len(data) + 1):
            if decoder.next_event() is None:
                break
    except ProtocolError as exc:
        assert exc.message


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 64))
def test_oversized_frame_is_refused_whatever_the_chunking(chunk):
    decoder = FrameDecoder("1.2", max_frame_size=1024)
    wire = encode_frame(Frame("SEND", [("destination", "/queue/a")], b"x" * 4096))
    raised = None
    for i in range(0, len(wire), chunk):
        decoder.feed(wire[i:i + chunk])
        try:
            while decoder.next_event() is not None:
                pass
        except ProtocolError as exc:
            raised = exc
            break
    assert raised is not None and "maxFrameSize" in raised.message


@pytest.mark.parametrize(
    "key, version",
    [("content-length\r", "1.1"), ("content-length\r", "1.0"), ("content-length:9", "1.0"), ("content-length\n", "1.0")],
)
def test_a_header_name_a_version_cannot_carry_never_becomes_another_header(key, version):
    """A 1.2 producer's escaped name must not reach a 1.0/1.1 reader as a second content-length."""
    frame = Frame("MESSAGE", [("destination", "/queue/a"), (key, "1"), ("content-length", "11")], b"hello-world")
    decoder = FrameDecoder(version)
    decoder.feed(encode_frame(frame, version))
    (got,) = [f for f in decoder if f is not HEARTBEAT]
    assert got.body == b"hello-world"
    assert [k for k, _ in got.headers].count("content-length") == 1
