"""A compiled CESQL expression and the two ways to obtain one.

``compile_cesql`` is what Trigger validation uses: besides syntax it rejects what can be known
wrong before any event arrives (spec §3.3 asks for compile-time checks where possible), which
for CESQL v1 means calls that match no function's name and arity. ``parse_cesql`` only rejects
syntax and leaves such calls to evaluate to ``false`` with a ``missingFunction`` error, exactly
as the spec's evaluation rules and the TCK describe; it is the engine-level entry point.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from channel.errors import Problem, ValidationError
from channel.filters.cesql.compiler import Evaluator, compile_node
from channel.filters.cesql.functions import lookup_function
from channel.filters.cesql.lexer import CesqlSyntaxError
from channel.filters.cesql.nodes import (
    Attribute,
    Binary,
    BinaryOp,
    Call,
    Literal,
    Logical,
    LogicalOp,
    Node,
    children,
)
from channel.filters.cesql.parser import parse
from channel.filters.cesql.values import CesqlError, Value

__all__ = ["CesqlExpression", "compile_cesql", "parse_cesql"]

# Names whose index lookup differs from a plain attribute read (see filters.attributes).
_ALIASED = frozenset({"datamediatype", "dataschema", "schemaurl"})


class CesqlExpression:
    """A CESQL expression compiled to closures; evaluation is pure and thread-safe."""

    __slots__ = ("_evaluate", "_exact", "_text")

    def __init__(self, text: str, root: Node) -> None:
        self._text = text
        self._evaluate: Evaluator = compile_node(root)
        self._exact: Mapping[str, str] = MappingProxyType(_equalities(root))

    @property
    def text(self) -> str:
        """The source text."""
        return self._text

    @property
    def exact_requirements(self) -> Mapping[str, str]:
        """Attribute values the expression needs to be true, for indexing.

        Taken from ``attr = 'text'`` comparisons at the top level or in a top-level ``AND``
        run: with string attribute values those hold exactly when the attribute equals the text.
        """
        return self._exact

    def evaluate(self, attributes: Mapping[str, Value]) -> tuple[Value, list[CesqlError]]:
        """The value of the expression and the errors met (spec §3.3); never raises."""
        errors: list[CesqlError] = []
        value = self._evaluate(attributes, errors)
        return value, errors

    def matches(self, attributes: Mapping[str, Value]) -> bool:
        """True iff the value is Boolean ``true`` and no error occurred (spec §1.2)."""
        errors: list[CesqlError] = []
        return self._evaluate(attributes, errors) is True and not errors

    def __repr__(self) -> str:
        return f"CesqlExpression({self._text!r})"


def parse_cesql(expression: str) -> CesqlExpression:
    """Compile ``expression``, rejecting only syntax errors (``ValidationError``, path ``""``)."""
    return CesqlExpression(expression, _parse(expression))


def compile_cesql(expression: str) -> CesqlExpression:
    """Compile ``expression`` for use as a filter.

    Raises ``ValidationError`` (problem paths ``""``, for the caller to prefix) on a syntax
    error, or listing every call that matches no built-in function's name and arity.
    """
    root = _parse(expression)
    problems = [
        Problem(
            "",
            f"missing function at position {call.position}: "
            f"no function {call.name} takes {len(call.args)} argument(s)",
        )
        for call in _calls(root)
        if lookup_function(call.name, len(call.args)) is None
    ]
    if problems:
        raise ValidationError(problems)
    return CesqlExpression(expression, root)


def _parse(expression: str) -> Node:
    try:
        return parse(expression)
    except CesqlSyntaxError as error:
        raise ValidationError.single("", f"parse error {error}") from None


def _calls(root: Node) -> list[Call]:
    found: list[Call] = []
    pending = [root]
    while pending:
        node = pending.pop()
        if isinstance(node, Call):
            found.append(node)
        pending.extend(reversed(children(node)))
    return found


def _equalities(root: Node) -> dict[str, str]:
    conjuncts: tuple[Node, ...] = (root,)
    if isinstance(root, Logical) and root.op is LogicalOp.AND:
        conjuncts = root.operands
    found: dict[str, str] = {}
    for node in conjuncts:
        if not (isinstance(node, Binary) and node.op is BinaryOp.EQUAL):
            continue
        for attribute, literal in ((node.left, node.right), (node.right, node.left)):
            if (
                isinstance(attribute, Attribute)
                and isinstance(literal, Literal)
                and type(literal.value) is str
                and attribute.name not in _ALIASED
            ):
                found.setdefault(attribute.name, literal.value)
    return found
