"""SQL-92 selectors: JMS semantics on string headers, three-valued logic, located errors."""

from __future__ import annotations

import re
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hamq.core.selector import MAX_NESTING, MAX_SELECTOR_LENGTH, SelectorError, compile_selector

HEADERS = {
    "price": "12",
    "weight": "2.5",
    "type": "car",
    "color": "Red",
    "flag": "TRUE",
    "off": "false",
    "name": "it's",
    "path": "a_b%c",
    "code": "007",
    "word": "abc",
    "message-id": "ID:1",
    "destination": "/queue/a",
    "persistent": "true",
}


def ev(text, headers=HEADERS):
    return compile_selector(text).evaluate(headers)


@pytest.mark.parametrize(
    "text,expected",
    [
        # comparisons, numeric against a numeric header
        ("price = 12", True),
        ("price = 12.0", True),
        ("price <> 12", False),
        ("price > 10", True),
        ("price >= 12", True),
        ("price < 12", False),
        ("price <= 11", False),
        ("weight > 2", True),
        ("weight = 2.5", True),
        ("code = 7", True),  # a numeric header is read as a number
        ("code = '007'", True),  # ... and against a string literal compared as a string
        ("code = '7'", False),
        # strings
        ("type = 'car'", True),
        ("type <> 'car'", False),
        ("color = 'red'", False),  # case-sensitive
        ("name = 'it''s'", True),
        ("type > 'bus'", True),  # lexicographic, as ActiveMQ
        # different types are never equal
        ("type = 1", None),
        ("'1' = 1", None),
        # booleans
        ("flag", True),
        ("off", False),
        ("flag = TRUE", True),
        ("off = FALSE", True),
        ("type", None),  # not a boolean header
        ("TRUE", True),
        ("FALSE", False),
        # header against header
        ("price = price", True),
        ("code = price", False),  # 7 vs 12 numerically
        ("type = type", True),
        # arithmetic, Java semantics
        ("price + 3 = 15", True),
        ("price - 20 = -8", True),
        ("price * weight = 30", True),
        ("price / 5 = 2", True),  # integer division
        ("-price / 5 = -2", True),  # truncates toward zero
        ("price / 5.0 = 2.4", True),
        ("price / 0 = 1", None),
        ("2 + 3 * 4 = 14", True),
        ("(2 + 3) * 4 = 20", True),
        ("10 - 2 - 3 = 5", True),  # left-associative
        ("-(-price) = 12", True),
        ("+price = 12", True),
        ("type + 1 = 2", None),  # a non-numeric header in arithmetic is UNKNOWN
        # literals
        ("0x1F = 31", True),
        ("010 = 8", True),  # octal, as in Java
        ("12L = 12", True),
        ("1.5e1 = 15", True),
        (".5 = 0.5", True),
        ("2.5f = 2.5", True),
        ("1e2 = 100", True),
        # LIKE
        ("type LIKE 'c%'", True),
        ("type LIKE 'c_r'", True),
        ("type LIKE '_'", False),
        ("type LIKE '%'", True),
        ("type LIKE '%r'", True),
        ("type LIKE 'car%'", True),
        ("type LIKE '%car%'", True),
        ("type NOT LIKE 'c%'", False),
        ("path LIKE 'a\\_b\\%c' ESCAPE '\\'", True),
        ("word LIKE 'a\\_c' ESCAPE '\\'", False),
        ("path LIKE 'a!_b%' ESCAPE '!'", True),
        ("color LIKE 'r%'", False),
        # IN
        ("type IN ('car', 'bus')", True),
        ("type IN ('bus')", False),
        ("type NOT IN ('bus', 'train')", True),
        ("price IN (11, 12)", True),
        ("price IN (-12, 13)", False),
        # BETWEEN
        ("price BETWEEN 10 AND 12", True),
        ("price BETWEEN 13 AND 20", False),
        ("price NOT BETWEEN 13 AND 20", True),
        ("weight BETWEEN 2 AND 3", True),
        ("price BETWEEN 1 + 1 AND price", True),
        # NULL
        ("missing IS NULL", True),
        ("missing IS NOT NULL", False),
        ("price IS NULL", False),
        ("price IS NOT NULL", True),
        ("missing + 1 IS NULL", True),
        # keywords are case-insensitive
        ("type like 'c%' and price between 1 and 20 or not flag", True),
        # JMS header names
        ("JMSMessageID = 'ID:1'", True),
        ("JMSPriority = 4", True),  # default priority
        ("JMSDeliveryMode = 'PERSISTENT'", True),
        ("JMSDestination LIKE '/queue/%'", True),
        ("JMSRedelivered = FALSE", True),
        ("JMSCorrelationID IS NULL", True),
        # identifiers may contain '.', '$' and '_'
        ("activemq.x IS NULL AND $y IS NULL AND _z IS NULL", True),
        # empty selector matches everything
        ("", True),
        ("   ", True),
    ],
)
def test_evaluation(text, expected):
    assert ev(text) is expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("missing = 1", None),
        ("missing <> 1", None),
        ("NOT missing = 1", None),
        ("missing = 1 AND TRUE", None),
        ("missing = 1 AND FALSE", False),
        ("missing = 1 OR TRUE", True),
        ("missing = 1 OR FALSE", None),
        ("missing LIKE '%'", None),
        ("missing IN ('a')", None),
        ("missing NOT IN ('a')", None),
        ("missing BETWEEN 1 AND 2", None),
        ("price BETWEEN missing AND 20", None),
        ("NOT (missing = 1 OR FALSE)", None),
    ],
)
def test_three_valued_logic_with_missing_headers(text, expected):
    assert ev(text) is expected
    # matches() is True only for TRUE: UNKNOWN never matches, nor does its negation.
    assert compile_selector(text).matches(HEADERS) is (expected is True)


@pytest.mark.parametrize(
    "text,column,needle",
    [
        ("price >", 8, "expected a header name, a literal or '('"),
        ("price = 'abc", 9, "unterminated string"),
        ("a != b", 3, "write <> for"),
        ("a == b", 3, "write = for"),
        ('a = "x"', 5, "single quotes"),
        ("(a = 1", 7, "')' to close the '(' at column 1"),
        ("a = 1 b", 7, "expected AND, OR or the end"),
        ("09 = 1", 1, "octal"),
        ("a LIKE b", 8, "quoted pattern"),
        ("a LIKE 'x' ESCAPE 'ab'", 19, "one quoted character"),
        ("a LIKE 'x!' ESCAPE '!'", 8, "ends with the ESCAPE character"),
        ("TRUE < FALSE", 6, "booleans can only be compared with = or <>"),
        ("'a' AND b", 1, "AND needs a condition"),
        ("5", 1, "a selector needs a condition, but this is a number"),
        ("'a' + 1 = 2", 1, "'+' needs a number, but this is a string"),
        ("1 LIKE 'x'", 1, "LIKE needs a string"),
        ("a NOT IS NULL", 7, "BETWEEN, IN or LIKE after NOT"),
        ("a IS NOT 5", 10, "NULL after IS NOT"),
        ("a IN ()", 7, "a string or number literal in the IN list"),
        ("a IN ('x' 'y')", 11, "',' or ')' in the IN list"),
        ("a BETWEEN 1 OR 2", 13, "AND between the two bounds"),
        ("a BETWEEN 'x' AND 'y'", 11, "BETWEEN needs a number"),
        ("a # b", 3, "unexpected character '#'"),
        ("99999999999999999999 = a", 1, "64-bit range"),
        ("0xFFFFFFFFFFFFFFFFFF = a", 1, "64-bit range"),
        ("AND", 1, "expected a header name"),
    ],
)
def test_errors_name_the_column_and_what_was_expected(text, column, needle):
    with pytest.raises(SelectorError) as info:
        compile_selector(text)
    err = info.value
    assert needle in str(err), str(err)
    assert err.position + 1 == column, str(err)
    assert str(err).endswith(f"(at column {column})")


def test_length_cap():
    compile_selector("a = '" + "x" * (MAX_SELECTOR_LENGTH - 6) + "'")
    with pytest.raises(SelectorError, match="over the limit"):
        compile_selector("a = '" + "x" * MAX_SELECTOR_LENGTH + "'")


@pytest.mark.parametrize("opener,closer", [("(", ")"), ("NOT ", ""), ("-", "")])
def test_nesting_cap_keeps_hostile_input_off_the_stack(opener, closer):
    core = "a = 1" if opener != "-" else "a"
    tail = "" if opener != "-" else " = 1"
    ok = opener * MAX_NESTING + core + closer * MAX_NESTING + tail
    compile_selector(ok).evaluate({"a": "1"})
    deep = opener * (MAX_NESTING + 1) + core + closer * (MAX_NESTING + 1) + tail
    with pytest.raises(SelectorError, match="more than"):
        compile_selector(deep)


def test_deep_nesting_allowed_still_works_with_little_stack_left():
    """The allowed depth must not hit RecursionError even when called deep in a stack."""
    text = "(" * MAX_NESTING + "a = 1" + ")" * MAX_NESTING
    limit = sys.getrecursionlimit()

    def at_depth(n):
        if n:
            return at_depth(n - 1)
        return compile_selector(text).matches({"a": "1"})

    assert at_depth(limit - 600) is True


def test_long_flat_chains_do_not_recurse():
    text = " AND ".join(["h IS NULL"] * 150) + " AND " + "+".join(["1"] * 600) + " = 600"
    assert len(text) < MAX_SELECTOR_LENGTH
    assert compile_selector(text).matches({}) is True


def test_hostile_like_pattern_is_fast_enough_to_not_backtrack():
    """'%a%a...%b' on a long run of 'a' is exponential for a backtracking regex."""
    selector = compile_selector("h LIKE '" + "%a" * 200 + "%b'")
    assert selector.evaluate({"h": "a" * 60000}) is False
    assert selector.evaluate({"h": "a" * 300 + "b"}) is True


# ------------------------------------------------------------ properties


def _like_reference(value: str, pattern: str) -> bool:
    """An obviously-right regex translation, for short inputs only."""
    rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, re.DOTALL) is not None


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab%_", max_size=8), st.text(alphabet="ab", max_size=10))
def test_like_agrees_with_a_reference_matcher(pattern, value):
    sel = compile_selector("h LIKE '" + pattern + "'")
    assert sel.evaluate({"h": value}) is _like_reference(value, pattern)


_values = st.one_of(st.none(), st.sampled_from(["1", "2", "-3", "2.5", "x", "TRUE", "false", ""]))


@settings(max_examples=200, deadline=None)
@given(_values, _values, st.integers(-4, 4), st.integers(-4, 4))
def test_algebraic_laws_hold_under_three_valued_logic(a, b, lo, hi):
    headers = {k: v for k, v in {"a": a, "b": b}.items() if v is not None}
    pairs = [
        (f"a BETWEEN {lo} AND {hi}", f"a >= {lo} AND a <= {hi}"),
        (f"a NOT BETWEEN {lo} AND {hi}", f"NOT (a >= {lo} AND a <= {hi})"),
        ("NOT NOT (a = b)", "a = b"),
        ("NOT (a = 1 AND b = 2)", "NOT a = 1 OR NOT b = 2"),
        ("NOT (a = 1 OR b = 2)", "NOT a = 1 AND NOT b = 2"),
        ("a <> b", "NOT a = b"),
        ("a IN ('1', 'x')", "a = '1' OR a = 'x'"),
        (f"a > {lo}", f"{lo} < a"),
    ]
    for left, right in pairs:
        assert ev(left, headers) is ev(right, headers), (left, right, headers)


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**31), 2**31), st.integers(-(2**31), 2**31).filter(bool))
def test_integer_arithmetic_is_java_like(x, y):
    headers = {"x": str(x), "y": str(y)}
    q = abs(x) // abs(y) * (1 if (x >= 0) == (y >= 0) else -1)  # Java truncates toward zero
    assert ev(f"x / y = {q}", headers) is True
    assert ev(f"x + y = {x + y}", headers) is True
    assert ev(f"x * y = {x * y}", headers) is True
    assert ev(f"x - y = {x - y}", headers) is True
