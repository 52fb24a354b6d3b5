"""Property-based tests: CESQL compilation and evaluation are total.

Any text either compiles or raises ``ValidationError`` (never another exception, never a
``RecursionError``); any compiled expression evaluates on any attribute map without raising,
to a CESQL value with at most one error; and ``LIKE`` agrees with a regular-expression oracle.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from channel.errors import Problem, ValidationError
from channel.filters.cesql import CesqlError, Value, compile_cesql, parse_cesql
from channel.filters.cesql.like import compile_like

PROPERTIES = settings(database=None, deadline=None, max_examples=400)

NAMES = ["type", "source", "id", "specversion", "subject", "myext", "n", "b", "missing"]
TOKENS = [
    *NAMES,
    *"()+-*/%=<>,'\"\\ _",
    "!=",
    "<>",
    "<=",
    ">=",
    "AND",
    "or",
    "XOR",
    "NOT",
    "LIKE",
    "IN",
    "EXISTS",
    "TRUE",
    "false",
    "0",
    "-1",
    "2147483648",
    "'x'",
    "'%a_'",
    "ABS",
    "CONCAT_WS",
    "SUBSTRING",
]

IDENTIFIER = st.sampled_from(NAMES).map(lambda name: name.upper() if len(name) == 1 else name)
INTEGER = st.integers(-(2**31), 2**31 - 1).map(str)
STRING = st.text(st.characters(exclude_characters="\\'"), max_size=8).map(lambda s: f"'{s}'")
PATTERN = st.text(alphabet="ab%_\\.", max_size=6).map(lambda s: "'" + s.rstrip("\\") + "'")
LEAF = st.one_of(
    INTEGER,
    STRING,
    st.sampled_from(["TRUE", "false"]),
    IDENTIFIER,
    IDENTIFIER.map(lambda name: f"EXISTS {name}"),
)
OPERATORS = st.sampled_from(
    ["+", "-", "*", "/", "%", "=", "!=", "<>", "<", "<=", ">", ">=", "AND", "OR", "XOR"]
)
FUNCTIONS = st.sampled_from(
    [
        "LENGTH",
        "CONCAT",
        "CONCAT_WS",
        "LOWER",
        "UPPER",
        "TRIM",
        "LEFT",
        "RIGHT",
        "SUBSTRING",
        "ABS",
        "INT",
        "BOOL",
        "STRING",
        "NOPE",  # no such function: evaluates to false with missingFunction
    ]
)


def _compound(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        inner.map(lambda e: f"({e})"),
        inner.map(lambda e: f"NOT {e}"),
        inner.map(lambda e: f"-{e}"),
        st.tuples(inner, OPERATORS, inner).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(inner, st.booleans(), PATTERN).map(lambda t: f"{t[0]} {'NOT ' * t[1]}LIKE {t[2]}"),
        st.tuples(inner, st.booleans(), st.lists(inner, min_size=1, max_size=3)).map(
            lambda t: f"{t[0]} {'NOT ' * t[1]}IN ({', '.join(t[2])})"
        ),
        st.tuples(FUNCTIONS, st.lists(inner, max_size=3)).map(lambda t: f"{t[0]}({', '.join(t[1])})"),
    )


EXPRESSION = st.recursive(LEAF, _compound, max_leaves=12)
ATTRIBUTE_VALUE: st.SearchStrategy[Value] = st.one_of(
    st.text(max_size=12),
    st.integers(),
    st.booleans(),
    st.sampled_from(["0", "-5", "10", "true", "FALSE", "2147483647", "-2147483648"]),
)
ATTRIBUTES = st.dictionaries(st.sampled_from(NAMES[:-1]), ATTRIBUTE_VALUE)


@PROPERTIES
@given(text=st.one_of(st.text(), st.lists(st.sampled_from(TOKENS)).map(" ".join), EXPRESSION))
def test_any_text_compiles_or_is_a_validation_error(text: str) -> None:
    problems: tuple[Problem, ...] | None = None
    try:
        compile_cesql(text)
    except ValidationError as error:
        problems = error.problems
    if problems is not None:
        assert problems
        assert all(problem.path == "" for problem in problems)


def _check_result(value: Value, errors: list[CesqlError]) -> None:
    assert type(value) in (str, int, bool)
    assert len(errors) <= 1
    assert all(isinstance(error, CesqlError) for error in errors)


@PROPERTIES
@given(expression=EXPRESSION, attributes=ATTRIBUTES)
def test_compiled_expressions_evaluate_without_raising(expression: str, attributes: dict[str, Value]) -> None:
    compiled = parse_cesql(expression)  # the generator only writes well-formed expressions
    snapshot = dict(attributes)
    value, errors = compiled.evaluate(attributes)
    _check_result(value, errors)
    assert compiled.matches(attributes) is (value is True and not errors)
    assert compiled.evaluate(attributes) == (value, errors)
    assert attributes == snapshot


@PROPERTIES
@given(value=st.integers(-(2**31), 2**31 - 1))
def test_integer_string_round_trip(value: int) -> None:
    assert parse_cesql(f"STRING({value})").evaluate({}) == (str(value), [])
    assert parse_cesql(f"INT('{value}') = {value}").evaluate({}) == (True, [])
    assert parse_cesql("n + 0").evaluate({"n": str(value)}) == (value, [])


def _oracle(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern) and pattern[index + 1] in "%_":
            parts.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        parts.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        index += 1
    return re.compile("".join(parts), re.DOTALL)


@settings(database=None, deadline=None, max_examples=1000)
@given(pattern=st.text(alphabet="ab%_\\\n", max_size=8), value=st.text(alphabet="ab%_\\\n", max_size=10))
def test_like_agrees_with_a_regex_oracle(pattern: str, value: str) -> None:
    assert compile_like(pattern)(value) is (_oracle(pattern).fullmatch(value) is not None)
