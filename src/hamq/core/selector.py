"""JMS / SQL-92 message selectors, as ActiveMQ evaluates them on STOMP headers.

A subscriber's ``selector`` header is untrusted text, so this is a
hand-written tokenizer and recursive-descent parser (never ``eval``) with a
length cap and a nesting cap, compiled once into closures that are cheap to
run per message.

Grammar (keywords are case-insensitive)::

    selector   := or_expr
    or_expr    := and_expr ( OR and_expr )*
    and_expr   := not_expr ( AND not_expr )*
    not_expr   := NOT not_expr | predicate
    predicate  := sum [ ( = | <> | < | > | <= | >= ) sum
                      | [NOT] BETWEEN sum AND sum
                      | [NOT] IN ( literal, ... )
                      | [NOT] LIKE 'pattern' [ ESCAPE 'c' ]
                      | IS [NOT] NULL ]
    sum        := product ( ( + | - ) product )*
    product    := unary ( ( * | / ) unary )*
    unary      := ( + | - ) unary | primary
    primary    := 'string' | number | TRUE | FALSE | identifier | ( or_expr )

Literals follow Java, as JMS says: ``'it''s'``, ``42``, ``42L``, ``0x2A``,
``052`` (octal), ``4.2``, ``4.2e1``, ``4.2f``.

Values and types. A STOMP header is always a string, so the rule (ActiveMQ's,
with its STOMP string conversion on) is:

* header vs string literal: compared as strings;
* header vs number (a literal or arithmetic): the header is read as a number
  (``12``, ``-3.5``, ``1e3``); a header that is not a number makes the
  comparison UNKNOWN;
* header vs header: as numbers when both are numbers, else as strings;
* header vs TRUE/FALSE, or a header used as a condition: ``true``/``false``
  (any case), anything else is UNKNOWN;
* ``<``, ``>``, ``<=``, ``>=`` on strings compare them lexicographically
  (ActiveMQ does the same); on booleans they are a syntax error;
* values of different types (``'1' = 1``) are never equal (UNKNOWN);
* arithmetic follows Java: integer ``/`` truncates toward zero; dividing by
  zero is UNKNOWN.

A missing header is NULL, and SQL three-valued logic applies: a comparison
with NULL is UNKNOWN, ``NOT UNKNOWN`` is UNKNOWN, ``FALSE AND UNKNOWN`` is
FALSE, ``TRUE OR UNKNOWN`` is TRUE. A message matches only when the whole
selector is TRUE.

JMS header names map to STOMP headers as in ActiveMQ: ``JMSMessageID`` ->
``message-id``, ``JMSCorrelationID`` -> ``correlation-id``, ``JMSType`` ->
``type``, ``JMSPriority`` -> ``priority`` (default 4), ``JMSTimestamp`` ->
``timestamp``, ``JMSExpiration`` -> ``expires`` (default 0),
``JMSDeliveryMode`` -> ``'PERSISTENT'`` when ``persistent:true`` else
``'NON_PERSISTENT'``, ``JMSDestination`` -> ``destination``, ``JMSReplyTo``
-> ``reply-to``, ``JMSRedelivered`` -> ``redelivered`` (default false).

An empty (or all-blank) selector matches every message, as in ActiveMQ.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, List, Mapping, Optional, Tuple, Union

__all__ = ["MAX_SELECTOR_LENGTH", "MAX_NESTING", "Selector", "SelectorError", "compile_selector"]

#: Real selectors are a line or two; the cap bounds parse time and memory.
MAX_SELECTOR_LENGTH = 4096
#: Parentheses, NOT and unary signs nest at most this deep (keeps recursion bounded).
MAX_NESTING = 50
#: A header longer than this is never read as a number.
_MAX_NUMERIC_TEXT = 64

Value = Union[str, int, float, bool, None]
Evaluator = Callable[[Mapping[str, str]], Value]


class SelectorError(ValueError):
    """A selector that does not parse; says where (1-based column) and what was expected."""

    def __init__(self, message: str, position: int, text: str = ""):
        self.message = message
        #: 0-based offset into the selector text.
        self.position = position
        self.text = text
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.message} (at column {self.position + 1})"


# ---------------------------------------------------------------- tokens

_KEYWORDS = frozenset({"AND", "OR", "NOT", "LIKE", "ESCAPE", "IN", "BETWEEN", "IS", "NULL", "TRUE", "FALSE"})

_NUMBER_RE = re.compile(
    r"""
      (?P<hex>0[xX][0-9a-fA-F]+)[lL]?
    | (?P<float>(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)[fFdD]?
    | (?P<floatsuffix>[0-9]+)[fFdD]
    | (?P<int>[0-9]+)[lL]?
    """,
    re.VERBOSE,
)
_IDENT_START = re.compile(r"[^\W\d]|\$", re.UNICODE)
_IDENT_RE = re.compile(r"(?:[^\W\d]|\$)(?:\w|\$|\.)*", re.UNICODE)
_OPERATORS = ("<>", "<=", ">=", "=", "<", ">", "+", "-", "*", "/", "(", ")", ",")
_LONG_LIMIT = 2**63


class _Token:
    __slots__ = ("kind", "value", "pos", "text")

    def __init__(self, kind: str, value, pos: int, text: str):
        self.kind = kind  # "str" | "num" | "ident" | "kw" | "op" | "eof"
        self.value = value
        self.pos = pos
        self.text = text

    def describe(self) -> str:
        if self.kind == "eof":
            return "the end of the selector"
        shown = self.text if len(self.text) <= 30 else self.text[:27] + "..."
        return f"'{shown}'" if self.kind != "str" else f"string {shown}"


def _tokenize(text: str) -> List[_Token]:
    tokens: List[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c == "'":
            j = i + 1
            parts = []
            while True:
                k = text.find("'", j)
                if k < 0:
                    raise SelectorError("unterminated string literal: add the closing quote '", i, text)
                parts.append(text[j:k])
                if k + 1 < n and text[k + 1] == "'":
                    parts.append("'")
                    j = k + 2
                    continue
                j = k + 1
                break
            tokens.append(_Token("str", "".join(parts), i, text[i:j]))
            i = j
            continue
        if c.isdigit() and c.isascii() or (c == "." and i + 1 < n and text[i + 1].isdigit()):
            m = _NUMBER_RE.match(text, i)
            if m is None:  # pragma: no cover - the regex accepts any digit run
                raise SelectorError("malformed number", i, text)
            tokens.append(_Token("num", _number_value(m, i, text), i, m.group(0)))
            i = m.end()
            continue
        if _IDENT_START.match(c):
            m = _IDENT_RE.match(text, i)
            word = m.group(0)
            if word.upper() in _KEYWORDS:
                tokens.append(_Token("kw", word.upper(), i, word))
            else:
                tokens.append(_Token("ident", word, i, word))
            i = m.end()
            continue
        for op in _OPERATORS:
            if text.startswith(op, i):
                tokens.append(_Token("op", op, i, op))
                i += len(op)
                break
        else:
            if text.startswith("!=", i):
                raise SelectorError("'!=' is not SQL: write <> for 'not equal'", i, text)
            if c == '"':
                raise SelectorError("strings are written in single quotes in SQL: 'like this'", i, text)
            raise SelectorError(f"unexpected character {c!r}", i, text)
    tokens.append(_Token("eof", None, n, ""))
    return tokens


def _number_value(m: "re.Match[str]", pos: int, text: str) -> Union[int, float]:
    if m.group("hex") is not None:
        value = int(m.group("hex")[2:], 16)
    elif m.group("float") is not None:
        return float(m.group("float"))
    elif m.group("floatsuffix") is not None:
        return float(m.group("floatsuffix"))
    else:
        digits = m.group("int")
        if len(digits) > 1 and digits[0] == "0":
            if any(d in "89" for d in digits):
                raise SelectorError(
                    f"{digits} is not a valid octal number (a leading 0 means octal, as in Java)", pos, text
                )
            value = int(digits, 8)
        else:
            if len(digits) > 20:
                raise SelectorError(f"integer {digits[:20]}... is out of the 64-bit range", pos, text)
            value = int(digits)
    if value > _LONG_LIMIT:
        raise SelectorError(f"integer {m.group(0)} is out of the 64-bit range", pos, text)
    return value


# ---------------------------------------------------------------- runtime helpers

_NUMERIC_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _as_number(value: Value) -> Union[int, float, None]:
    """A header string read as a number, or None when it is not one."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value
    if len(value) > _MAX_NUMERIC_TEXT or not _NUMERIC_TEXT.fullmatch(value):
        return None
    if "." in value or "e" in value or "E" in value:
        return float(value)
    return int(value)


def _as_bool(value: Value) -> Optional[bool]:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
    return None


def _lookup(name: str) -> Evaluator:
    """An identifier: a header value (a string) or None when the header is absent."""
    if name in _JMS_HEADERS:
        return _JMS_HEADERS[name]
    return lambda h: h.get(name)


def _with_default(header: str, default: str) -> Evaluator:
    return lambda h: h.get(header, default)


def _delivery_mode(h: Mapping[str, str]) -> str:
    return "PERSISTENT" if h.get("persistent", "").lower() == "true" else "NON_PERSISTENT"


_JMS_HEADERS: Dict[str, Evaluator] = {
    "JMSMessageID": lambda h: h.get("message-id"),
    "JMSCorrelationID": lambda h: h.get("correlation-id"),
    "JMSType": lambda h: h.get("type"),
    "JMSPriority": _with_default("priority", "4"),
    "JMSTimestamp": lambda h: h.get("timestamp"),
    "JMSExpiration": _with_default("expires", "0"),
    "JMSDeliveryMode": _delivery_mode,
    "JMSDestination": lambda h: h.get("destination"),
    "JMSReplyTo": lambda h: h.get("reply-to"),
    "JMSRedelivered": _with_default("redelivered", "false"),
}


def _like_matcher(pattern: str, escape: Optional[str]) -> Callable[[str], bool]:
    """Compile a LIKE pattern without regex backtracking.

    The pattern is split at ``%`` into fixed-length segments (``_`` matches
    one character). The first segment is anchored at the start, the last at
    the end, and each middle one is found leftmost in order, which is exact
    for this kind of pattern and takes linear-ish time, so a hostile pattern
    such as ``'%a%a%a%a%b'`` cannot stall the dispatcher.
    """
    segments: List[List[Optional[str]]] = [[]]  # None stands for '_'
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if escape is not None and c == escape:
            if i + 1 >= len(pattern):
                raise ValueError("the pattern ends with the ESCAPE character; escape something or remove it")
            segments[-1].append(pattern[i + 1])
            i += 2
            continue
        if c == "%":
            segments.append([])
        elif c == "_":
            segments[-1].append(None)
        else:
            segments[-1].append(c)
        i += 1

    def finder(seg: List[Optional[str]]):
        if None not in seg:
            literal = "".join(seg)  # type: ignore[arg-type]
            return (
                len(literal),
                (lambda s, pos: s.find(literal, pos)),
                (lambda s, pos: s.startswith(literal, pos)),
            )
        # Fixed length: a regex without any repetition cannot backtrack badly.
        rx = re.compile("".join("." if ch is None else re.escape(ch) for ch in seg), re.DOTALL)

        def find(s: str, pos: int) -> int:
            m = rx.search(s, pos)
            return m.start() if m else -1

        return len(seg), find, (lambda s, pos: rx.match(s, pos) is not None)

    compiled = [finder(seg) for seg in segments]
    if len(compiled) == 1:
        length, _find, at = compiled[0]
        return lambda s: len(s) == length and at(s, 0)
    first, middle, last = compiled[0], compiled[1:-1], compiled[-1]
    minimum = sum(c[0] for c in compiled)

    def matches(s: str) -> bool:
        if len(s) < minimum or not first[2](s, 0):
            return False
        pos = first[0]
        for length, find, _at in middle:
            found = find(s, pos)
            if found < 0:
                return False
            pos = found + length
        tail = len(s) - last[0]
        return tail >= pos and last[2](s, tail)

    return matches


# ---------------------------------------------------------------- parser

#: Static kinds of a sub-expression; "header" is a string known only at run time.
_STR, _NUM, _BOOL, _HEADER = "string", "number", "boolean", "header"


class _Node:
    __slots__ = ("kind", "fn", "pos")

    def __init__(self, kind: str, fn: Evaluator, pos: int):
        self.kind = kind
        self.fn = fn
        self.pos = pos


def _truthy_all(h, fns) -> Optional[bool]:
    result: Optional[bool] = True
    for fn in fns:
        v = fn(h)
        if v is False:
            return False
        if v is None:
            result = None
    return result


def _truthy_any(h, fns) -> Optional[bool]:
    result: Optional[bool] = False
    for fn in fns:
        v = fn(h)
        if v is True:
            return True
        if v is None:
            result = None
    return result


def _java_div(a, b):
    if b == 0:
        return None
    if isinstance(a, int) and isinstance(b, int):
        q = abs(a) // abs(b)
        return q if (a >= 0) == (b >= 0) else -q
    return a / b


_ARITH = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": _java_div,
}

_COMPARE = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    # -- token helpers

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def is_kw(self, word: str) -> bool:
        return self.tok.kind == "kw" and self.tok.value == word

    def is_op(self, op: str) -> bool:
        return self.tok.kind == "op" and self.tok.value == op

    def error(self, expected: str, tok: Optional[_Token] = None) -> SelectorError:
        tok = tok or self.tok
        return SelectorError(f"expected {expected}, found {tok.describe()}", tok.pos, self.text)

    def expect_kw(self, word: str, context: str) -> _Token:
        if not self.is_kw(word):
            raise self.error(f"{word} {context}")
        return self.advance()

    def expect_op(self, op: str, context: str) -> _Token:
        if not self.is_op(op):
            raise self.error(f"'{op}' {context}")
        return self.advance()

    def nest(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise SelectorError(
                f"the selector nests parentheses, NOT or signs more than {MAX_NESTING} deep; simplify it",
                pos,
                self.text,
            )

    # -- type helpers

    def condition(self, node: _Node, what: str) -> Evaluator:
        """``node`` used where a condition is required."""
        if node.kind == _BOOL:
            return node.fn
        if node.kind == _HEADER:
            fn = node.fn
            return lambda h: _as_bool(fn(h))
        raise SelectorError(f"{what} needs a condition, but this is a {node.kind}", node.pos, self.text)

    def numeric(self, node: _Node, what: str) -> Evaluator:
        if node.kind == _NUM:
            return node.fn
        if node.kind == _HEADER:
            fn = node.fn
            return lambda h: _as_number(fn(h))
        raise SelectorError(f"{what} needs a number, but this is a {node.kind}", node.pos, self.text)

    # -- grammar

    def parse(self) -> Evaluator:
        if self.tok.kind == "eof":
            return lambda h: True
        node = self.or_expr()
        if self.tok.kind != "eof":
            raise self.error("AND, OR or the end of the selector")
        return self.condition(node, "a selector")

    def or_expr(self) -> _Node:
        first = self.and_expr()
        if not self.is_kw("OR"):
            return first
        fns = [self.condition(first, "OR")]
        while self.is_kw("OR"):
            self.advance()
            fns.append(self.condition(self.and_expr(), "OR"))
        return _Node(_BOOL, lambda h: _truthy_any(h, fns), first.pos)

    def and_expr(self) -> _Node:
        first = self.not_expr()
        if not self.is_kw("AND"):
            return first
        fns = [self.condition(first, "AND")]
        while self.is_kw("AND"):
            self.advance()
            fns.append(self.condition(self.not_expr(), "AND"))
        return _Node(_BOOL, lambda h: _truthy_all(h, fns), first.pos)

    def not_expr(self) -> _Node:
        if self.is_kw("NOT"):
            tok = self.advance()
            self.nest(tok.pos)
            inner = self.condition(self.not_expr(), "NOT")
            self.depth -= 1

            def negate(h):
                v = inner(h)
                return None if v is None else not v

            return _Node(_BOOL, negate, tok.pos)
        return self.predicate()

    def predicate(self) -> _Node:
        left = self.sum()
        tok = self.tok
        if tok.kind == "op" and tok.value in _COMPARE:
            self.advance()
            if tok.value == "=" and self.is_op("="):
                raise SelectorError("'==' is not SQL: write = for 'equal'", tok.pos, self.text)
            right = self.sum()
            return self.comparison(tok, left, right)
        negated = False
        if self.is_kw("NOT"):
            nxt = self.tokens[self.i + 1]
            if nxt.kind == "kw" and nxt.value in ("BETWEEN", "IN", "LIKE"):
                self.advance()
                negated = True
            else:
                raise self.error("BETWEEN, IN or LIKE after NOT", nxt)
        if self.is_kw("BETWEEN"):
            node = self.between(left)
        elif self.is_kw("IN"):
            node = self.in_list(left)
        elif self.is_kw("LIKE"):
            node = self.like(left)
        elif self.is_kw("IS") and not negated:
            return self.is_null(left)
        else:
            return left
        if negated:
            fn = node.fn

            def negate(h):
                v = fn(h)
                return None if v is None else not v

            return _Node(_BOOL, negate, node.pos)
        return node

    def comparison(self, op_tok: _Token, left: _Node, right: _Node) -> _Node:
        op = op_tok.value
        cmp = _COMPARE[op]
        kinds = {left.kind, right.kind}
        lf, rf = left.fn, right.fn
        if _BOOL in kinds and op not in ("=", "<>"):
            raise SelectorError(
                f"booleans can only be compared with = or <>, not {op}", op_tok.pos, self.text
            )
        if left.kind == right.kind and left.kind != _HEADER:
            # Same static type: compare directly.
            conv_l = conv_r = None
        elif kinds == {_HEADER, _NUM}:
            conv_l = conv_r = _as_number
        elif kinds == {_HEADER, _BOOL}:
            conv_l = conv_r = _as_bool
        elif kinds == {_HEADER, _STR}:
            conv_l = conv_r = None
        elif kinds == {_HEADER}:
            return _Node(_BOOL, lambda h: _compare_headers(cmp, lf(h), rf(h)), left.pos)
        else:
            # Different types are never equal, nor ordered: UNKNOWN.
            return _Node(_BOOL, lambda h: None, left.pos)

        def compare(h):
            a, b = lf(h), rf(h)
            if conv_l is not None:
                a, b = conv_l(a), conv_r(b)
            if a is None or b is None:
                return None
            try:
                return cmp(a, b)
            except (TypeError, OverflowError):  # pragma: no cover - kinds are checked above
                return None

        return _Node(_BOOL, compare, left.pos)

    def between(self, left: _Node) -> _Node:
        tok = self.advance()
        value = self.numeric(left, "BETWEEN")
        low = self.numeric(self.sum(), "BETWEEN")
        self.expect_kw("AND", "between the two bounds of BETWEEN")
        high = self.numeric(self.sum(), "BETWEEN")

        def between(h):
            v, lo, hi = value(h), low(h), high(h)
            if v is None or lo is None or hi is None:
                return None
            return lo <= v <= hi

        return _Node(_BOOL, between, tok.pos)

    def in_list(self, left: _Node) -> _Node:
        tok = self.advance()
        if left.kind not in (_HEADER, _STR, _NUM):
            raise SelectorError(
                f"IN needs a header or value on its left, not a {left.kind}", left.pos, self.text
            )
        self.expect_op("(", "after IN")
        strings = set()
        numbers = set()
        while True:
            item = self.advance()
            if item.kind == "str":
                strings.add(item.value)
            elif item.kind == "num":
                numbers.add(item.value)
            elif item.kind == "op" and item.value in "+-" and self.tok.kind == "num":
                number = self.advance().value
                numbers.add(-number if item.value == "-" else number)
            else:
                raise self.error("a string or number literal in the IN list", item)
            if self.is_op(")"):
                self.advance()
                break
            self.expect_op(",", "or ')' in the IN list")
        fn = left.fn
        is_num = left.kind == _NUM

        def member(h):
            v = fn(h)
            if v is None:
                return None
            if not is_num and v in strings:
                return True
            if numbers:
                n = _as_number(v)
                if n is not None and n in numbers:
                    return True
            return False

        return _Node(_BOOL, member, tok.pos)

    def like(self, left: _Node) -> _Node:
        tok = self.advance()
        if left.kind not in (_HEADER, _STR):
            raise SelectorError(f"LIKE needs a string on its left, not a {left.kind}", left.pos, self.text)
        pattern = self.advance()
        if pattern.kind != "str":
            raise self.error("a quoted pattern after LIKE, e.g. LIKE 'abc%'", pattern)
        escape = None
        if self.is_kw("ESCAPE"):
            self.advance()
            esc = self.advance()
            if esc.kind != "str" or len(esc.value) != 1:
                raise self.error("one quoted character after ESCAPE, e.g. ESCAPE '\\'", esc)
            escape = esc.value
        try:
            matcher = _like_matcher(pattern.value, escape)
        except ValueError as exc:
            raise SelectorError(str(exc), pattern.pos, self.text) from None
        fn = left.fn

        def like(h):
            v = fn(h)
            return None if v is None else matcher(v)

        return _Node(_BOOL, like, tok.pos)

    def is_null(self, left: _Node) -> _Node:
        tok = self.advance()
        negated = False
        if self.is_kw("NOT"):
            self.advance()
            negated = True
        self.expect_kw("NULL", "after IS" + (" NOT" if negated else ""))
        # Any value may be tested: arithmetic on a missing header is NULL too.
        fn = left.fn
        if negated:
            return _Node(_BOOL, lambda h: fn(h) is not None, tok.pos)
        return _Node(_BOOL, lambda h: fn(h) is None, tok.pos)

    def sum(self) -> _Node:
        return self.arithmetic(self.product, ("+", "-"))

    def product(self) -> _Node:
        return self.arithmetic(self.unary, ("*", "/"))

    def arithmetic(self, operand: Callable[[], _Node], ops: Tuple[str, ...]) -> _Node:
        first = operand()
        if not (self.tok.kind == "op" and self.tok.value in ops):
            return first
        steps = []
        fns_first = self.numeric(first, f"'{self.tok.value}'")
        while self.tok.kind == "op" and self.tok.value in ops:
            op = self.advance().value
            steps.append((_ARITH[op], self.numeric(operand(), f"'{op}'")))

        def compute(h):
            acc = fns_first(h)
            for fn_op, fn in steps:
                if acc is None:
                    return None
                b = fn(h)
                if b is None:
                    return None
                try:
                    acc = fn_op(acc, b)
                except OverflowError:
                    return None
            return acc

        return _Node(_NUM, compute, first.pos)

    def unary(self) -> _Node:
        if self.tok.kind == "op" and self.tok.value in ("+", "-"):
            tok = self.advance()
            self.nest(tok.pos)
            inner = self.unary()
            self.depth -= 1
            fn = self.numeric(inner, f"unary '{tok.value}'")
            if tok.value == "+":
                return _Node(_NUM, fn, tok.pos)

            def neg(h):
                v = fn(h)
                return None if v is None else -v

            return _Node(_NUM, neg, tok.pos)
        return self.primary()

    def primary(self) -> _Node:
        tok = self.advance()
        if tok.kind == "str":
            value = tok.value
            return _Node(_STR, lambda h: value, tok.pos)
        if tok.kind == "num":
            number = tok.value
            return _Node(_NUM, lambda h: number, tok.pos)
        if tok.kind == "kw" and tok.value in ("TRUE", "FALSE"):
            flag = tok.value == "TRUE"
            return _Node(_BOOL, lambda h: flag, tok.pos)
        if tok.kind == "ident":
            return _Node(_HEADER, _lookup(tok.value), tok.pos)
        if tok.kind == "op" and tok.value == "(":
            self.nest(tok.pos)
            inner = self.or_expr()
            self.depth -= 1
            self.expect_op(")", f"to close the '(' at column {tok.pos + 1}")
            return _Node(inner.kind, inner.fn, tok.pos)
        raise self.error("a header name, a literal or '('", tok)


def _compare_headers(cmp, a: Value, b: Value) -> Optional[bool]:
    if a is None or b is None:
        return None
    na, nb = _as_number(a), _as_number(b)
    if na is not None and nb is not None:
        return cmp(na, nb)
    return cmp(a, b)


class Selector:
    """A compiled selector; ``matches(headers)`` is True only when the selector is TRUE."""

    __slots__ = ("text", "_fn")

    def __init__(self, text: str, fn: Evaluator):
        self.text = text
        self._fn = fn

    def matches(self, headers: Mapping[str, str]) -> bool:
        return self._fn(headers) is True

    def evaluate(self, headers: Mapping[str, str]) -> Optional[bool]:
        """TRUE, FALSE or None for UNKNOWN (three-valued logic), for tests and diagnostics."""
        return self._fn(headers)

    def __repr__(self) -> str:
        return f"Selector({self.text!r})"


def compile_selector(text: str) -> Selector:
    """Parse ``text``; raise :class:`SelectorError` naming the column and what was expected."""
    if not isinstance(text, str):
        raise SelectorError(f"a selector must be a string, not {type(text).__name__}", 0)
    if len(text) > MAX_SELECTOR_LENGTH:
        raise SelectorError(
            f"the selector is {len(text)} characters long, over the limit of {MAX_SELECTOR_LENGTH}; shorten it",
            MAX_SELECTOR_LENGTH,
            text[:100],
        )
    return Selector(text, _Parser(text).parse())
