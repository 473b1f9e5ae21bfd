"""Failover URL parsing: ActiveMQ option names and defaults, nested.*, and clear errors."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hamq.client.url import (
    BrokerURI,
    FailoverOptions,
    FailoverURLError,
    parse_url,
    pass_limit,
    reconnect_delays,
)


def test_defaults_match_activemq_failover_transport():
    url = parse_url("failover:(tcp://b1:61613,tcp://b2:61613)")
    opts = url.options
    assert url.is_failover
    assert (opts.initial_reconnect_delay, opts.max_reconnect_delay) == (10, 30000)
    assert opts.use_exponential_back_off is True
    assert opts.reconnect_delay_exponent == 2.0
    assert (opts.max_reconnect_attempts, opts.startup_max_reconnect_attempts) == (-1, -1)
    assert opts.randomize is True
    assert opts.timeout == -1
    assert [(b.scheme, b.host, b.port) for b in url.brokers] == [("tcp", "b1", 61613), ("tcp", "b2", 61613)]


def test_every_failover_option_is_read():
    url = parse_url(
        "failover:(tcp://a:1)?initialReconnectDelay=100&maxReconnectDelay=5000&useExponentialBackOff=false"
        "&reconnectDelayExponent=1.5&maxReconnectAttempts=7&startupMaxReconnectAttempts=0&randomize=FALSE"
        "&timeout=2500"
    )
    assert url.options == FailoverOptions(100, 5000, False, 1.5, 7, 0, False, 2500)


def test_plain_broker_uri_is_not_failover():
    url = parse_url("tcp://127.0.0.1:61613")
    assert not url.is_failover
    assert url.brokers == (BrokerURI("tcp", "127.0.0.1", 61613),)


@pytest.mark.parametrize(
    "text, scheme, tls, port",
    [
        ("stomp://h", "stomp", False, 61613),
        ("stomp+ssl://h", "stomp+ssl", True, 61612),
        ("ssl://h:7000", "ssl", True, 7000),
        ("tcp://h:7001", "tcp", False, 7001),
    ],
)
def test_inner_schemes(text, scheme, tls, port):
    (broker,) = parse_url(f"failover:({text})").brokers
    assert (broker.scheme, broker.tls, broker.port) == (scheme, tls, port)


def test_single_uri_without_parentheses_and_double_slash_form():
    assert parse_url("failover:tcp://a:1?randomize=false").options.randomize is False
    assert parse_url("failover://(tcp://a:1,tcp://b:2)").brokers[1].host == "b"


def test_ipv6_host():
    (broker,) = parse_url("failover:(tcp://[::1]:61613)").brokers
    assert (broker.host, broker.port, str(broker)) == ("::1", 61613, "tcp://[::1]:61613")


def test_nested_options_apply_to_every_uri_and_override_its_own():
    url = parse_url(
        "failover:(ssl://a:1?connectionTimeout=100&sslCaFile=/own.pem,ssl://b:2)"
        "?nested.connectionTimeout=2000&nested.verifyHostName=false"
    )
    a, b = url.brokers
    assert (a.connection_timeout, b.connection_timeout) == (2000, 2000)
    assert a.verify_host_name is False and b.verify_host_name is False
    assert a.ssl_ca_file == "/own.pem" and b.ssl_ca_file is None


def _error(text):
    with pytest.raises(FailoverURLError) as info:
        parse_url(text)
    return str(info.value)


def test_unknown_option_suggests_closest_name():
    message = _error("failover:(tcp://a:1)?randomise=false")
    assert "'randomise'" in message and "did you mean 'randomize'" in message and "Fix:" in message


def test_option_names_are_case_sensitive_and_the_error_says_so():
    message = _error("failover:(tcp://a:1)?InitialReconnectDelay=5")
    assert "'initialReconnectDelay'" in message and "case-sensitive" in message


def test_java_field_name_points_to_url_option():
    assert "reconnectDelayExponent" in _error("failover:(tcp://a:1)?backOffMultiplier=3")


def test_unknown_nested_option_is_an_error():
    message = _error("failover:(tcp://a:1)?nested.conectionTimeout=5")
    assert "'conectionTimeout'" in message and "connectionTimeout" in message


def test_unknown_inner_option_is_an_error():
    assert "'soTimeout'" in _error("failover:(tcp://a:1?soTimeout=5)")


@pytest.mark.parametrize(
    "text, words",
    [
        (
            "failover:(tcp://a:1)?maxReconnectAttempts=lots",
            ["'lots'", "maxReconnectAttempts", "whole number"],
        ),
        ("failover:(tcp://a:1)?randomize=yes", ["'yes'", "true or false"]),
        ("failover:(tcp://a:1)?reconnectDelayExponent=0.5", ["reconnectDelayExponent", ">= 1"]),
        ("failover:(tcp://a:1)?maxReconnectAttempts=-2", ["-1", "retry forever"]),
        ("failover:(tcp://a:1)?timeout=-5", ["timeout", "wait forever"]),
        ("failover:(tcp://a:1)?initialReconnectDelay=-1", ["initialReconnectDelay", ">= 0"]),
        ("failover:(tcp://a:1)?randomize", ["has no value", "randomize=<value>"]),
    ],
)
def test_bad_values_name_option_and_fix(text, words):
    message = _error(text)
    assert "Fix:" in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    "text, words",
    [
        ("", ["empty broker URL"]),
        ("failover:(tcp://a:1", ["unclosed '('"]),
        ("failover:()", ["lists no brokers"]),
        ("failover:(tcp://a:1,,tcp://b:2)", ["empty broker URI"]),
        ("failover:(tcp://a)", ["no port", "tcp://a:PORT"]),
        ("failover:(tcp://a:99999)", ["port '99999'"]),
        ("failover:(http://a:1)", ["unsupported scheme 'http'"]),
        ("failvoer:(tcp://a:1)", ["did you mean 'failover'"]),
        ("failover:(tcp://:1)", ["no host"]),
        ("failover:(tcp://u:p@a:1)", ["login and passcode"]),
        ("failover:(tcp://a:1/path)", ["has a path"]),
        ("failover:(tcp://a:1)junk", ["unexpected 'junk'"]),
        ("tcp:a:1", ["not a broker URI"]),
        ("failover:(tcp://::1:5)", ["IPv6", "brackets"]),
    ],
)
def test_malformed_urls(text, words):
    message = _error(text)
    assert "Fix:" in message
    for word in words:
        assert word in message


def _delays(**kw):
    return [round(d * 1000, 3) for d in itertools.islice(reconnect_delays(FailoverOptions(**kw)), 14)]


def test_back_off_doubles_from_10ms_up_to_30s():
    assert _delays() == [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 20480, 30000, 30000]


def test_back_off_exponent_and_cap():
    assert _delays(initial_reconnect_delay=100, reconnect_delay_exponent=3.0, max_reconnect_delay=1000)[
        :5
    ] == [
        100,
        300,
        900,
        1000,
        1000,
    ]


def test_no_exponential_back_off_keeps_initial_delay():
    assert set(_delays(initial_reconnect_delay=250, use_exponential_back_off=False)) == {250}


def test_initial_delay_above_cap_is_capped():
    assert _delays(initial_reconnect_delay=5000, max_reconnect_delay=1000)[0] == 1000


def test_pass_limits_follow_activemq():
    forever = FailoverOptions()
    assert pass_limit(forever, first_connection=True) is None
    assert pass_limit(forever, first_connection=False) is None
    startup = FailoverOptions(max_reconnect_attempts=5, startup_max_reconnect_attempts=2)
    assert pass_limit(startup, first_connection=True) == 2
    assert pass_limit(startup, first_connection=False) == 5
    # startupMaxReconnectAttempts=-1 falls back to maxReconnectAttempts, as in ActiveMQ.
    assert pass_limit(FailoverOptions(max_reconnect_attempts=3), first_connection=True) == 3
    # 0 means: try once, no retry.
    assert pass_limit(FailoverOptions(max_reconnect_attempts=0), first_connection=False) == 1


_URL_PIECES = st.sampled_from(
    [
        "failover:",
        "(",
        ")",
        ",",
        "?",
        "&",
        "=",
        "tcp://",
        "ssl://",
        "stomp+ssl://",
        "[",
        "]",
        ":",
        "::1",
        "h",
        "61613",
        "nested.",
        "randomize",
        "timeout",
        "true",
        "-1",
        "1e309",
        "nan",
        "%",
        "%zz",
        " ",
        "//",
        "@",
    ]
)


@given(st.lists(_URL_PIECES | st.text(max_size=4), max_size=12).map("".join))
@settings(max_examples=300, deadline=None)
def test_any_text_parses_or_raises_failover_url_error(text):
    try:
        url = parse_url(text)
    except FailoverURLError as exc:
        assert "Fix:" in str(exc)
    else:
        assert url.brokers and all(0 < b.port < 65536 and b.host for b in url.brokers)
