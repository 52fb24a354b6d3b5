"""Compiles a CESQL syntax tree into nested Python closures, once per expression.

Evaluation model (spec §3.3, ``conformance/CESQL-NOTES.md`` §6): every closure takes the
attributes and an error list and returns a value. An absent attribute yields ``false`` and a
``missingAttribute`` error; an operator whose operand reported an error, or whose operand cast
failed, returns the zero value of its own return type without evaluating further operands; a
function may return a value together with its own error. Errors therefore stop evaluation, the
list never holds more than one, and "the list is not empty" is how a closure learns that its
operand failed. ``AND`` and ``OR`` short-circuit. Integer results outside 32 bits are a
``math`` error with value 0 (the spec is silent; Go wraps around silently).

Closures are specialised for the shapes filters use most (an attribute compared with a literal,
``IN`` over literals, ``LIKE`` on an attribute) so that a typical filter runs in microseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from channel.filters.cesql.casts import caster_for, to_bool, to_int, to_str, type_of
from channel.filters.cesql.functions import lookup_function
from channel.filters.cesql.like import compile_like
from channel.filters.cesql.nodes import (
    Attribute,
    Binary,
    BinaryOp,
    Call,
    Exists,
    In,
    Like,
    Literal,
    Logical,
    LogicalOp,
    Node,
    Unary,
    UnaryOp,
)
from channel.filters.cesql.values import INT_MAX, INT_MIN, CesqlError, ErrorKind, Value

__all__ = ["Evaluator", "compile_node"]

Attributes = Mapping[str, Value]
Evaluator = Callable[[Attributes, list[CesqlError]], Value]
"""A compiled (sub-)expression: returns its value and appends at most one error."""

_REQUIRED: Final = frozenset({"specversion", "id", "source", "type"})


def compile_node(node: Node) -> Evaluator:
    """The closure evaluating ``node``."""
    match node:
        case Literal(value=value):
            return lambda attributes, errors: value
        case Attribute(name=name):
            return _attribute(name)
        case Exists(name=name):
            if name in _REQUIRED:
                return lambda attributes, errors: True
            return lambda attributes, errors: name in attributes
        case Unary(op=UnaryOp.NOT, operand=operand):
            return _not(compile_node(operand))
        case Unary(op=UnaryOp.NEGATE, operand=operand):
            return _negate(compile_node(operand))
        case Binary(op=BinaryOp.EQUAL | BinaryOp.NOT_EQUAL as op, left=left, right=right):
            return _equality(left, right, negated=op is BinaryOp.NOT_EQUAL)
        case Binary(op=op, left=left, right=right):
            return _integer_operation(op, compile_node(left), compile_node(right))
        case Logical(op=op, operands=operands):
            return _logical(op, tuple(compile_node(o) for o in operands))
        case Like(operand=operand, pattern=pattern, negated=negated):
            return _like(operand, pattern, negated)
        case In(operand=operand, items=items, negated=negated):
            return _in(compile_node(operand), items, negated)
        case Call():
            return _call(node)
    raise AssertionError(f"unknown node {node!r}")  # unreachable: the match is exhaustive


def _missing(name: str) -> CesqlError:
    return CesqlError(ErrorKind.MISSING_ATTRIBUTE, f"attribute {name!r} is absent")


def _attribute(name: str) -> Evaluator:
    missing = _missing(name)

    def attribute(attributes: Attributes, errors: list[CesqlError]) -> Value:
        value = attributes.get(name)
        if value is None:
            errors.append(missing)
            return False
        return value

    return attribute


def _not(operand: Evaluator) -> Evaluator:
    def not_(attributes: Attributes, errors: list[CesqlError]) -> Value:
        value = operand(attributes, errors)
        if errors:
            return False
        if type(value) is not bool:
            value = to_bool(value, errors)
            if errors:
                return False
        return not value

    return not_


def _negate(operand: Evaluator) -> Evaluator:
    def negate(attributes: Attributes, errors: list[CesqlError]) -> Value:
        value = operand(attributes, errors)
        if errors:
            return 0
        number = to_int(value, errors)
        if errors:
            return 0
        return _in_range(-number, errors)

    return negate


def _in_range(number: int, errors: list[CesqlError]) -> int:
    if INT_MIN <= number <= INT_MAX:
        return number
    errors.append(CesqlError(ErrorKind.MATH, f"result {number} does not fit in 32 bits"))
    return 0


def _equals(left: Value, right: Value, errors: list[CesqlError]) -> bool:
    """``left = right`` with ``left`` cast to the type of ``right`` (spec §3.7, rule 2.2)."""
    kind = type(right)
    if type(left) is kind:
        return left == right
    if kind is str:
        return to_str(left) == right
    if kind is bool:
        flag = to_bool(left, errors)
        return not errors and flag == right
    number = to_int(left, errors)
    return not errors and number == right


def _equality(left_node: Node, right_node: Node, *, negated: bool) -> Evaluator:
    left = compile_node(left_node)
    if isinstance(right_node, Literal) and type(right_node.value) is str:
        text = right_node.value
        if isinstance(left_node, Attribute):
            return _attribute_equals_text(left_node.name, text, negated)

        def equals_text(attributes: Attributes, errors: list[CesqlError]) -> Value:
            value = left(attributes, errors)
            if errors:
                return False
            return (to_str(value) == text) is not negated

        return equals_text

    right = compile_node(right_node)

    def equals(attributes: Attributes, errors: list[CesqlError]) -> Value:
        left_value = left(attributes, errors)
        if errors:
            return False
        right_value = right(attributes, errors)
        if errors:
            return False
        result = _equals(left_value, right_value, errors)
        return False if errors else result is not negated

    return equals


def _attribute_equals_text(name: str, text: str, negated: bool) -> Evaluator:
    missing = _missing(name)

    def attribute_equals_text(attributes: Attributes, errors: list[CesqlError]) -> Value:
        value = attributes.get(name)
        if value is None:
            errors.append(missing)
            return False
        if type(value) is not str:
            value = to_str(value)
        return (value == text) is not negated

    return attribute_equals_text


IntegerOperation = Callable[[int, int, list[CesqlError]], Value]


def _divide(left: int, right: int, errors: list[CesqlError]) -> Value:
    if right == 0:
        errors.append(CesqlError(ErrorKind.MATH, "division by zero"))
        return 0
    quotient = abs(left) // abs(right)
    return _in_range(quotient if (left < 0) == (right < 0) else -quotient, errors)


def _modulo(left: int, right: int, errors: list[CesqlError]) -> Value:
    if right == 0:
        errors.append(CesqlError(ErrorKind.MATH, "modulo by zero"))
        return 0
    remainder = abs(left) % abs(right)
    return remainder if left >= 0 else -remainder


_INTEGER_OPERATIONS: Final[dict[BinaryOp, tuple[IntegerOperation, Value]]] = {
    BinaryOp.ADD: (lambda a, b, errors: _in_range(a + b, errors), 0),
    BinaryOp.SUBTRACT: (lambda a, b, errors: _in_range(a - b, errors), 0),
    BinaryOp.MULTIPLY: (lambda a, b, errors: _in_range(a * b, errors), 0),
    BinaryOp.DIVIDE: (_divide, 0),
    BinaryOp.MODULO: (_modulo, 0),
    BinaryOp.LESS: (lambda a, b, errors: a < b, False),
    BinaryOp.LESS_EQUAL: (lambda a, b, errors: a <= b, False),
    BinaryOp.GREATER: (lambda a, b, errors: a > b, False),
    BinaryOp.GREATER_EQUAL: (lambda a, b, errors: a >= b, False),
}


def _integer_operation(op: BinaryOp, left: Evaluator, right: Evaluator) -> Evaluator:
    """Arithmetic and ordering: both operands are cast to Integer (spec §3.7, rule 2.1)."""
    operation, zero = _INTEGER_OPERATIONS[op]

    def integer_operation(attributes: Attributes, errors: list[CesqlError]) -> Value:
        value = left(attributes, errors)
        if errors:
            return zero
        left_number = to_int(value, errors)
        if errors:
            return zero
        value = right(attributes, errors)
        if errors:
            return zero
        right_number = to_int(value, errors)
        if errors:
            return zero
        return operation(left_number, right_number, errors)

    return integer_operation


def _logical(op: LogicalOp, operands: tuple[Evaluator, ...]) -> Evaluator:
    # AND stops at the first false operand and OR at the first true one (short-circuit);
    # XOR needs them all. An error anywhere makes the result false.
    stop_at = {LogicalOp.AND: False, LogicalOp.OR: True}.get(op)

    def logical(attributes: Attributes, errors: list[CesqlError]) -> Value:
        result = False
        for operand in operands:
            value = operand(attributes, errors)
            if errors:
                return False
            if type(value) is not bool:
                value = to_bool(value, errors)
                if errors:
                    return False
            if value is stop_at:
                return value
            result = result is not value
        return result if stop_at is None else not stop_at

    return logical


def _like(operand_node: Node, pattern: str, negated: bool) -> Evaluator:
    matcher = compile_like(pattern)
    if isinstance(operand_node, Attribute):
        name, missing = operand_node.name, _missing(operand_node.name)

        def attribute_like(attributes: Attributes, errors: list[CesqlError]) -> Value:
            value = attributes.get(name)
            if value is None:
                errors.append(missing)
                return False
            return matcher(value if type(value) is str else to_str(value)) is not negated

        return attribute_like

    operand = compile_node(operand_node)

    def like(attributes: Attributes, errors: list[CesqlError]) -> Value:
        value = operand(attributes, errors)
        if errors:
            return False
        return matcher(to_str(value)) is not negated

    return like


def _in(operand: Evaluator, item_nodes: tuple[Node, ...], negated: bool) -> Evaluator:
    """``x IN (...)``: each item is cast to the type of ``x``; the first equal item decides."""
    literal_texts = None
    literals = [item.value for item in item_nodes if isinstance(item, Literal)]
    if len(literals) == len(item_nodes):
        # Casting to String never fails, so for a String operand the set is known now.
        literal_texts = frozenset(to_str(value) for value in literals)
    items = tuple(compile_node(item) for item in item_nodes)

    def in_(attributes: Attributes, errors: list[CesqlError]) -> Value:
        value = operand(attributes, errors)
        if errors:
            return False
        kind = type(value)
        if kind is str and literal_texts is not None:
            return (value in literal_texts) is not negated
        cast = caster_for(type_of(value))
        for item in items:
            candidate = item(attributes, errors)
            if errors:
                return False
            if type(candidate) is not kind:
                candidate = cast(candidate, errors)
                if errors:
                    return False
            if candidate == value:
                return not negated
        return negated

    return in_


def _call(node: Call) -> Evaluator:
    function = lookup_function(node.name, len(node.args))
    if function is None:
        missing = CesqlError(
            ErrorKind.MISSING_FUNCTION,
            f"no function {node.name} takes {len(node.args)} argument(s)",
        )

        def missing_function(attributes: Attributes, errors: list[CesqlError]) -> Value:
            errors.append(missing)
            return False

        return missing_function

    implementation, zero = function.implementation, function.returns.zero
    arguments = tuple(
        (compile_node(arg), caster_for(function.param_type(index))) for index, arg in enumerate(node.args)
    )

    def call(attributes: Attributes, errors: list[CesqlError]) -> Value:
        values: list[Value] = []
        for evaluate, cast in arguments:
            value = evaluate(attributes, errors)
            if errors:
                return zero
            value = cast(value, errors)
            if errors:
                return zero
            values.append(value)
        return implementation(values, errors)

    return call
