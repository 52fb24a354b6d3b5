"""The syntax tree of a parsed CESQL expression.

The parser builds these immutable nodes once; the compiler turns them into closures and
never looks at them again. Names are already normalised: attribute names lower-case,
function names upper-case, integer literals range-checked.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from channel.filters.cesql.values import Value

__all__ = [
    "Attribute",
    "Binary",
    "BinaryOp",
    "Call",
    "Exists",
    "In",
    "Like",
    "Literal",
    "Logical",
    "LogicalOp",
    "Node",
    "Unary",
    "UnaryOp",
    "children",
    "depth",
]


class UnaryOp(enum.Enum):
    """Prefix operators."""

    NOT = "NOT"
    NEGATE = "-"


class BinaryOp(enum.Enum):
    """Infix operators, by their CESQL spelling."""

    MULTIPLY = "*"
    DIVIDE = "/"
    MODULO = "%"
    ADD = "+"
    SUBTRACT = "-"
    EQUAL = "="
    NOT_EQUAL = "!="
    LESS = "<"
    LESS_EQUAL = "<="
    GREATER = ">"
    GREATER_EQUAL = ">="


class LogicalOp(enum.Enum):
    """The Boolean connectives, which share one precedence level."""

    AND = "AND"
    OR = "OR"
    XOR = "XOR"


@dataclass(frozen=True, slots=True)
class Literal:
    """A String, Integer or Boolean literal."""

    value: Value


@dataclass(frozen=True, slots=True)
class Attribute:
    """A reference to a context attribute or extension (lower-case name)."""

    name: str


@dataclass(frozen=True, slots=True)
class Exists:
    """``EXISTS name``."""

    name: str


@dataclass(frozen=True, slots=True)
class Unary:
    """``NOT x`` or ``-x``."""

    op: UnaryOp
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary:
    """``left op right``; ``<>`` is parsed as ``NOT_EQUAL``."""

    op: BinaryOp
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Logical:
    """``a op b op c ...``: a run of one connective, evaluated left to right.

    A left-associative chain is kept flat (one node, not a nested tree) so that long
    ``OR`` lists neither deepen the tree nor the evaluation stack.
    """

    op: LogicalOp
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Like:
    """``operand [NOT] LIKE 'pattern'`` (the pattern is always a literal)."""

    operand: Node
    pattern: str
    negated: bool


@dataclass(frozen=True, slots=True)
class In:
    """``operand [NOT] IN (items...)`` with at least one item."""

    operand: Node
    items: tuple[Node, ...]
    negated: bool


@dataclass(frozen=True, slots=True)
class Call:
    """A function invocation (upper-case name)."""

    name: str
    args: tuple[Node, ...]
    position: int


Node = Literal | Attribute | Exists | Unary | Binary | Logical | Like | In | Call


def children(node: Node) -> tuple[Node, ...]:
    """The direct sub-expressions of ``node``."""
    match node:
        case Unary(operand=operand) | Like(operand=operand):
            return (operand,)
        case Binary(left=left, right=right):
            return (left, right)
        case In(operand=operand, items=items):
            return (operand, *items)
        case Call(args=args):
            return args
        case Logical(operands=operands):
            return operands
        case _:
            return ()


def depth(node: Node) -> int:
    """The number of levels in the tree under ``node`` (a leaf is 1), computed without recursion."""
    deepest = 0
    pending = [(node, 1)]
    while pending:
        current, level = pending.pop()
        deepest = max(deepest, level)
        pending.extend((child, level + 1) for child in children(current))
    return deepest
