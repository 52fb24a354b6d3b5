"""CESQL behaviour the TCK leaves open or covers thinly (CESQL-NOTES.md §4, §5; D-12)."""

from __future__ import annotations

import time
from types import MappingProxyType

import pytest

from channel.errors import ValidationError
from channel.filters.cesql import CesqlExpression, ErrorKind, Value, compile_cesql, parse_cesql
from channel.filters.cesql.like import compile_like

EVENT: dict[str, Value] = {"specversion": "1.0", "id": "myId", "source": "/src", "type": "t"}

OK = None
MISSING = ErrorKind.MISSING_ATTRIBUTE
MATH = ErrorKind.MATH
CAST = ErrorKind.CAST
FUNCTION = ErrorKind.FUNCTION_EVALUATION
NO_FUNCTION = ErrorKind.MISSING_FUNCTION


def evaluate(expression: str, **attributes: Value) -> tuple[Value, ErrorKind | None]:
    value, errors = parse_cesql(expression).evaluate({**EVENT, **attributes})
    assert len(errors) <= 1
    return value, errors[0].kind if errors else None


CASES = [
    # D-12: AND, OR and XOR share one level and group left to right.
    pytest.param("true OR false AND false", {}, (False, OK), id="D-12 (true OR false) AND false"),
    pytest.param("false AND true OR true", {}, (True, OK), id="D-12 (false AND true) OR true"),
    pytest.param("true XOR true OR true", {}, (True, OK), id="D-12 xor then or"),
    pytest.param("true OR true XOR true", {}, (False, OK), id="D-12 or then xor"),
    pytest.param("true OR (true XOR true)", {}, (True, OK), id="parentheses group"),
    # Precedence (spec §3.6).
    pytest.param("1 + 2 IN (3)", {}, (1, OK), id="IN binds tighter than +"),
    pytest.param("NOT type LIKE 't'", {}, (False, CAST), id="NOT binds tighter than LIKE"),
    pytest.param("NOT (type LIKE 't')", {}, (False, OK), id="NOT of a LIKE needs parentheses"),
    pytest.param("2 * 3 = 6 AND 1 < 2", {}, (True, OK), id="arithmetic then comparison then AND"),
    pytest.param("-2 * -3", {}, (6, OK), id="unary minus binds tighter than *"),
    # Signs and integer range.
    pytest.param("5-3", {}, (2, OK), id="minus without spaces subtracts"),
    pytest.param("5 - -3", {}, (8, OK), id="minus a negative literal"),
    pytest.param("+5", {}, (5, OK), id="plus sign in literal"),
    pytest.param("5 + +3", {}, (8, OK), id="plus-signed operand"),
    pytest.param("-2147483648", {}, (-2147483648, OK), id="minimum literal"),
    pytest.param("2147483647 + 1", {}, (0, MATH), id="overflow is a math error"),
    pytest.param("-2147483648 - 1", {}, (0, MATH), id="underflow is a math error"),
    pytest.param("65536 * 65536", {}, (0, MATH), id="multiplication overflow"),
    pytest.param("--2147483648", {}, (0, MATH), id="negating the minimum overflows"),
    pytest.param("-2147483648 / -1", {}, (0, MATH), id="division overflow"),
    pytest.param("-2147483648 % -1", {}, (0, OK), id="modulo of the minimum"),
    pytest.param("-7 / 2", {}, (-3, OK), id="division truncates toward zero"),
    pytest.param("-7 % 2", {}, (-1, OK), id="remainder has the sign of the dividend"),
    pytest.param("7 % -2", {}, (1, OK), id="remainder positive dividend"),
    # String literals.
    pytest.param("'ab\\c'", {}, ("ab\\c", OK), id="other backslash kept"),
    pytest.param("'\\\\'", {}, ("\\\\", OK), id="double backslash kept"),
    pytest.param("'it''s'", {}, ("it's", OK), id="doubled quote is one quote"),
    pytest.param('"say ""hi"""', {}, ('say "hi"', OK), id="doubled double quote"),
    pytest.param("'a\"b\\'c'", {}, ("a\"b'c", OK), id="escaped single quote"),
    pytest.param("\t1\n+\r2 ", {}, (3, OK), id="tab newline carriage return are spaces"),
    # Identifiers and keywords are case-insensitive; string content is not.
    pytest.param("TYPE = 't'", {}, (True, OK), id="identifier case-insensitive"),
    pytest.param("type = 'T'", {}, (False, OK), id="string comparison case-sensitive"),
    pytest.param("true aNd FALSE", {}, (False, OK), id="keyword case"),
    pytest.param("type LiKe 't' AnD ExIsTs ID", {}, (True, OK), id="mixed case keywords"),
    pytest.param("int(hop) NoT iN (1, 2)", {"hop": "5"}, (True, OK), id="lower-case function, NOT IN"),
    # Missing attributes (SQL-05).
    pytest.param("missing", {}, (False, MISSING), id="bare missing attribute"),
    pytest.param("EXISTS missing", {}, (False, OK), id="EXISTS never errors"),
    pytest.param("EXISTS id", {}, (True, OK), id="EXISTS required attribute"),
    pytest.param("missing = missing", {}, (False, MISSING), id="missing on both sides"),
    pytest.param("TRUE XOR missing", {}, (False, MISSING), id="XOR right operand missing"),
    pytest.param("LENGTH(missing)", {}, (0, MISSING), id="function argument missing"),
    pytest.param("UPPER(missing)", {}, ("", MISSING), id="string function zero value"),
    pytest.param("type IN (missing, 't')", {}, (False, MISSING), id="IN element missing"),
    pytest.param("type IN ('t', missing)", {}, (True, OK), id="IN stops at the first match"),
    pytest.param("type NOT IN ('x', missing)", {}, (False, MISSING), id="NOT IN with error is false"),
    pytest.param("missing NOT LIKE 'x'", {}, (False, MISSING), id="NOT LIKE with error is false"),
    # Casts (spec §3.7).
    pytest.param("NOT 10", {}, (False, OK), id="Integer to Boolean is a cast (spec over TCK)"),
    pytest.param("NOT 0", {}, (True, OK), id="zero is false"),
    pytest.param("1 IN ('a', 1)", {}, (False, CAST), id="IN element cast fails"),
    pytest.param("1 IN (1, 'a')", {}, (True, OK), id="IN match before a bad element"),
    pytest.param("'a' < 5", {}, (False, CAST), id="comparison cast fails"),
    pytest.param("' 5' = 5", {}, (False, CAST), id="spaces are not an integer"),
    pytest.param("'1_000' = 1000", {}, (False, CAST), id="underscores are not an integer"),
    pytest.param("'+5' = 5", {}, (True, OK), id="signed integer text"),
    pytest.param("'2147483648' = 0", {}, (False, CAST), id="integer text overflow"),
    pytest.param("'TrUe' = TRUE", {}, (True, OK), id="boolean text any case"),
    pytest.param("'yes' = TRUE", {}, (False, CAST), id="boolean text invalid"),
    pytest.param("LEFT('abc', 'x')", {}, ("", CAST), id="function argument cast fails"),
    pytest.param("ABS('-5')", {}, (5, OK), id="function argument cast"),
    pytest.param("CONCAT(1, TRUE, 'x')", {}, ("1truex", OK), id="variadic arguments cast"),
    # Functions (spec §3.5), with Unicode counted in characters.
    pytest.param("LENGTH('héllo')", {}, (5, OK), id="LENGTH counts characters"),
    pytest.param("LEFT('héllo', 2)", {}, ("hé", OK), id="LEFT counts characters"),
    pytest.param("RIGHT('héllo', 4)", {}, ("éllo", OK), id="RIGHT counts characters"),
    pytest.param("SUBSTRING('héllo', 2, 1)", {}, ("é", OK), id="SUBSTRING counts characters"),
    pytest.param("SUBSTRING('abc', 3)", {}, ("c", OK), id="SUBSTRING last position"),
    pytest.param("SUBSTRING('abc', -3)", {}, ("abc", OK), id="SUBSTRING from the start backwards"),
    pytest.param("SUBSTRING('abc', 1, -1)", {}, ("", FUNCTION), id="SUBSTRING negative length"),
    pytest.param("SUBSTRING('abc', 2, 100)", {}, ("bc", OK), id="SUBSTRING length past the end"),
    pytest.param("UPPER('straße')", {}, ("STRASSE", OK), id="UPPER full case mapping"),
    pytest.param("TRIM('\u3000 a\u00a0')", {}, ("a", OK), id="TRIM Unicode white space"),
    pytest.param("TRIM('\x1ca\x1c')", {}, ("\x1ca\x1c", OK), id="TRIM keeps control characters"),
    pytest.param("RIGHT('abc', 0)", {}, ("", OK), id="RIGHT zero"),
    pytest.param("UPPER(CONCAT_WS())", {}, ("", NO_FUNCTION), id="missing function inside a call"),
    pytest.param("ABS(1, 2)", {}, (False, NO_FUNCTION), id="wrong arity is a missing function"),
    # Typed values (TCK eventOverrides) and the string values a Kafka header carries.
    pytest.param("myint", {"myint": 10}, (10, OK), id="typed integer"),
    pytest.param("myint", {"myint": "10"}, ("10", OK), id="integer as header string"),
    pytest.param("myint > 5 AND myint = 10", {"myint": "10"}, (True, OK), id="header string casts"),
    pytest.param("NOT mybool", {"mybool": "false"}, (True, OK), id="boolean header string"),
    pytest.param("mybool = TRUE", {"mybool": True}, (True, OK), id="typed boolean"),
    pytest.param("myint LIKE '1%'", {"myint": 10}, (True, OK), id="LIKE casts a typed integer"),
    pytest.param("myint IN ('10')", {"myint": 10}, (True, OK), id="IN casts items to the typed left side"),
]


@pytest.mark.parametrize(("expression", "attributes", "expected"), CASES)
def test_evaluation(
    expression: str, attributes: dict[str, Value], expected: tuple[Value, ErrorKind | None]
) -> None:
    value, kind = evaluate(expression, **attributes)
    assert type(value) is type(expected[0])
    assert (value, kind) == expected


LIKE = [
    ("abc", "abc", True),
    ("", "", True),
    ("", "%", True),
    ("", "_", False),
    ("", "_%", False),
    ("a", "_%", True),
    ("abc", "a%", True),
    ("a", "a%", True),
    ("abc", "%c", True),
    ("abc", "%b%", True),
    ("abc", "%d%", False),
    ("abc", "%%", True),
    ("abcabc", "%b%b%", True),
    ("abcac", "%b%b%", False),
    ("axxbyyc", "a%b%c", True),
    ("aXbc", "a_b%", True),
    ("ab", "a_b%", False),
    ("a\nb", "a_b", True),
    ("a\nb", "a%", True),
    ("a%", "a\\%", True),
    ("ab", "a\\%", False),
    ("a_", "a\\_", True),
    ("ab", "a\\_", False),
    ("a\\b", "a\\b", True),
    ("a\\b", "a\\_", False),
    ("a.b", "a.b", True),
    ("axb", "a.b", False),
    ("a*b", "a*b", True),
    ("(x)", "(_)", True),
    ("ABC", "abc", False),
    ("xabcx", "_abc_", True),
    ("xabcxabc", "%abc_abc", True),
    ("aaa", "%a_a", True),
    ("aaaa", "a%a%a%a", True),
    ("aaa", "a%a%a%a", False),
]


@pytest.mark.parametrize(
    ("value", "pattern", "expected"), LIKE, ids=[f"{v!r} LIKE {p!r}" for v, p, _ in LIKE]
)
def test_like(value: str, pattern: str, expected: bool) -> None:
    escaped = pattern.replace("'", "\\'")
    assert evaluate(f"v LIKE '{escaped}'", v=value) == (expected, None)
    assert evaluate(f"v NOT LIKE '{escaped}'", v=value) == (not expected, None)


def test_like_trailing_backslash_matches_itself() -> None:
    # No CESQL literal ends in one backslash (it would escape the quote), so test the matcher.
    assert compile_like("a\\")("a\\")
    assert not compile_like("a\\")("a")


def test_like_never_backtracks() -> None:
    expression = parse_cesql("v LIKE '" + "%a" * 30 + "%b'")
    started = time.perf_counter()
    assert expression.evaluate({"v": "a" * 5000}) == (False, [])
    assert time.perf_counter() - started < 0.5


PARSE_ERRORS = [
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param("ABC(", id="unclosed call"),
    pytest.param("(1 + 2", id="unclosed parenthesis"),
    pytest.param("1 + 2)", id="extra parenthesis"),
    pytest.param("x LIKE 123", id="LIKE pattern not a string"),
    pytest.param("x LIKE y", id="LIKE pattern an attribute"),
    pytest.param("x IN ()", id="empty IN set"),
    pytest.param("x IN 1", id="IN without parentheses"),
    pytest.param("2147483648", id="literal too large"),
    pytest.param("-2147483649", id="literal too small"),
    pytest.param("- 2147483648", id="sign separated from literal"),
    pytest.param("99999999999999999999999999999999999999999", id="huge literal"),
    pytest.param("'abc", id="unterminated string"),
    pytest.param("'abc\\'", id="escaped closing quote"),
    pytest.param("my_ext = 1", id="underscore attribute"),
    pytest.param("F1(2)", id="digit in function name"),
    pytest.param("EXISTS 'x'", id="EXISTS of a literal"),
    pytest.param("EXISTS", id="EXISTS alone"),
    pytest.param("x NOT 5", id="NOT after an operand"),
    pytest.param("1 == 1", id="double equals"),
    pytest.param("1 ! 1", id="lone bang"),
    pytest.param("a.b", id="dot"),
    pytest.param("+ 5", id="unary plus"),
    pytest.param("type = 'a' type = 'b'", id="two expressions"),
    pytest.param("\x0b1", id="vertical tab is not a space"),
    pytest.param("héllo", id="non-ASCII identifier"),
    pytest.param("IN", id="keyword alone"),
    pytest.param("CONCAT(1,)", id="trailing comma"),
]


@pytest.mark.parametrize("expression", PARSE_ERRORS)
def test_parse_errors(expression: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_cesql(expression)
    (problem,) = caught.value.problems
    assert problem.path == ""
    assert problem.message.startswith("parse error at position ")


def test_compile_rejects_every_missing_function() -> None:
    with pytest.raises(ValidationError) as caught:
        compile_cesql("CONCAT_WS() = '' OR NOPE(type) OR LENGTH(type, 2) = 1 OR UPPER(type) = 'T'")
    messages = [problem.message for problem in caught.value.problems]
    assert len(messages) == 3
    assert all(message.startswith("missing function") for message in messages)
    assert "CONCAT_WS takes 0" in messages[0]
    assert all(problem.path == "" for problem in caught.value.problems)


def test_parse_leaves_missing_functions_to_evaluation() -> None:
    assert parse_cesql("CONCAT_WS()").evaluate(EVENT)[0] is False


def test_matches_needs_true_and_no_error() -> None:
    assert compile_cesql("type = 't'").matches(EVENT)
    assert not compile_cesql("type").matches(EVENT)
    assert not compile_cesql("1").matches(EVENT)
    assert not compile_cesql("LEFT(type, -1) = 't'").matches(EVENT)
    assert not compile_cesql("missing = 'x' OR TRUE").matches(EVENT)
    assert compile_cesql("TRUE OR missing = 'x'").matches(EVENT)


def test_evaluation_does_not_mutate_attributes() -> None:
    frozen = MappingProxyType(dict(EVENT))
    expression = compile_cesql("UPPER(type) = 'T' AND CONCAT(id, source) LIKE 'my%'")
    assert expression.evaluate(frozen) == (True, [])
    assert dict(frozen) == EVENT


def test_error_kinds_use_tck_names() -> None:
    assert [kind.value for kind in ErrorKind] == [
        "parse",
        "math",
        "cast",
        "missingAttribute",
        "missingFunction",
        "functionEvaluation",
        "generic",
    ]
    _, errors = parse_cesql("1 / 0").evaluate(EVENT)
    assert errors[0].kind == "math"
    assert str(errors[0]) == "math: division by zero"


def test_expression_keeps_its_text() -> None:
    expression = compile_cesql("type = 't'")
    assert isinstance(expression, CesqlExpression)
    assert expression.text == "type = 't'"
    assert "type = 't'" in repr(expression)


def test_long_or_chain_is_flat() -> None:
    expression = compile_cesql(" OR ".join(f"type = 't{n}'" for n in range(2000)))
    assert expression.evaluate({**EVENT, "type": "t1999"}) == (True, [])
    assert expression.evaluate(EVENT) == (False, [])


@pytest.mark.parametrize(
    "expression",
    [
        pytest.param("(" * 5000 + "1" + ")" * 5000, id="deep parentheses"),
        pytest.param("NOT " * 5000 + "TRUE", id="many NOTs"),
        pytest.param("-" * 5000 + "1", id="many minus signs"),
        pytest.param("ABS(" * 5000 + "1" + ")" * 5000, id="deep calls"),
        pytest.param("1" + " + 1" * 5000, id="long arithmetic chain"),
        pytest.param("x IN (" * 3000 + "1" + ")" * 3000, id="deep IN sets"),
    ],
)
def test_hostile_nesting_is_a_parse_error(expression: str) -> None:
    with pytest.raises(ValidationError, match="deep"):
        compile_cesql(expression)


def test_reasonable_nesting_is_accepted() -> None:
    assert compile_cesql("(" * 40 + "1 = 1" + ")" * 40).matches(EVENT)
    assert compile_cesql("1" + " + 1" * 100 + " = 101").matches(EVENT)
