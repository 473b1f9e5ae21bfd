"""Inputs the fuzzers found, kept as tests, plus a quick run of every fuzz target.

The full run is ``python tests/fuzz/run.py --examples 100000``; here each
target gets a few hundred inputs so that a harness that rots or a target that
starts crashing on common input shows up in the normal suite. Timing is
reported by the runner only, never asserted here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hamq.client.url import FailoverURLError, parse_url
from hamq.config.loader import ConfigError, load_config
from hamq.core.selector import SelectorError, compile_selector
from hamq.stomp.codec import FrameDecoder, ProtocolError

FUZZ_DIR = Path(__file__).resolve().parents[1] / "fuzz"
sys.path.insert(0, str(FUZZ_DIR))

from harness import fuzz  # noqa: E402
from targets import all_targets  # noqa: E402

# ------------------------------------------------------------ crashers found by the fuzzers


@pytest.mark.parametrize(
    "declaration",
    [
        # LookupError escaped from expat: unknown encoding name.
        b'<?xml version="1.0" encoding="bogus"?><broker/>',
        # ValueError escaped from expat: multi-byte codecs are not supported.
        b'<?xml version="1.0" encoding="shift_jis"?><broker/>',
    ],
)
def test_config_unreadable_encoding_is_a_config_error(tmp_path, declaration):
    path = tmp_path / "broker.xml"
    path.write_bytes(declaration)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == 1 and "encoding" in info.value.problem and "UTF-8" in info.value.fix


def test_config_broker_inheriting_the_spring_namespace_gets_a_namespace_message(tmp_path):
    """Found while fuzzing: the old message blamed <beans> for containing <broker> at all."""
    path = tmp_path / "broker.xml"
    path.write_text(
        '<beans xmlns="http://www.springframework.org/schema/beans">\n<broker brokerName="o"/>\n</beans>'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == 2
    assert "namespace http://www.springframework.org/schema/beans" in info.value.problem
    assert 'xmlns="http://activemq.apache.org/schema/core"' in info.value.fix


@pytest.mark.parametrize(
    "url",
    [
        "tcp://localhost:\u00b2",  # str.isdigit() is True for '²', int() refuses it (ValueError)
        "tcp://localhost:" + "9" * 5000,  # int() refuses > 4300 digits (ValueError)
        "FAILOVER",  # no ':' after the scheme (IndexError)
        "failover",
    ],
)
def test_url_crashers_are_url_errors(url):
    with pytest.raises(FailoverURLError):
        parse_url(url)


@pytest.mark.parametrize(
    "text",
    [
        "(" * 200 + "a",
        "NOT " * 500 + "a",
        "-" * 1000 + "a = 1",
        "a IN (" + "'x'," * 900 + "'y')",
        "a LIKE '" + "%_" * 1000 + "'",
        "a = " + "9" * 3000,
        "a = 0" + "7" * 3000,
        "a = 0x" + "f" * 3000,
        "a = 1e" + "9" * 3000,
        "a = '\ud800'",
    ],
)
def test_selector_hostile_shapes_are_refused_or_bounded(text):
    try:
        selector = compile_selector(text)
    except SelectorError:
        return
    assert selector.evaluate({"a": "x" * 70000}) in (True, False, None)


@pytest.mark.parametrize(
    "length",
    [
        "\u00b2\t",  # str.isdigit() is True for '²', int() refuses it (ValueError escaped the decoder)
        "\u0663",  # Arabic-Indic three: a digit to isdigit(), not to STOMP
        "9" * 5000,  # int() refuses over 4300 digits (ValueError)
    ],
)
def test_codec_content_length_that_int_refuses_is_a_protocol_error(length):
    dec = FrameDecoder(version="1.0", max_frame_size=64)
    dec.feed(f"A\ncontent-length:{length}\n\nbody\x00".encode())
    with pytest.raises(ProtocolError):
        dec.next_event()


def test_codec_content_length_with_leading_zeros_still_works():
    dec = FrameDecoder(version="1.2")
    dec.feed(b"SEND\ncontent-length:" + b"0" * 30 + b"4\n\nbody\x00")
    assert dec.next_event().body == b"body"


def test_codec_garbage_after_a_broken_frame_stays_refused():
    dec = FrameDecoder(version="1.2")
    dec.feed(b"SEND\nbad\\q:1\n\n\x00")
    with pytest.raises(ProtocolError):
        dec.next_event()
    dec.feed(b"SEND\n\n\x00")
    with pytest.raises(ProtocolError):
        dec.next_event()


# ------------------------------------------------------------ quick run of every target

TARGETS = all_targets()


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target_quick_run(name):
    stats = fuzz(TARGETS[name], 200, memory_limit_bytes=32 * 1024 * 1024, seed=1234)
    assert stats.failure is None
    assert stats.examples >= 100  # hypothesis really ran the target
