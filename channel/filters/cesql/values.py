"""CESQL's value model: the three primitive types, their zero values and the evaluation errors.

Every CESQL expression evaluates to a String, an Integer or a Boolean, plus a list of errors
(spec §1, §3.3). Python's ``bool`` is a subclass of ``int``, so the code in this package always
tells the types apart with ``type(x) is ...``, never with ``isinstance``. The error kinds carry the
names the conformance suite (TCK) uses, so a test can compare them as plain strings.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "CesqlError",
    "ErrorKind",
    "Value",
    "ValueType",
    "describe",
]

Value = str | int | bool
"""A CESQL value. ``bool`` is Boolean, any other ``int`` is Integer, ``str`` is String."""

INT_MIN: Final = -(2**31)
INT_MAX: Final = 2**31 - 1


class ErrorKind(enum.StrEnum):
    """The error kinds of spec §3.3, spelled as in the TCK's ``error:`` field."""

    PARSE = "parse"
    MATH = "math"
    CAST = "cast"
    MISSING_ATTRIBUTE = "missingAttribute"
    MISSING_FUNCTION = "missingFunction"
    FUNCTION_EVALUATION = "functionEvaluation"
    GENERIC = "generic"


@dataclass(frozen=True, slots=True)
class CesqlError:
    """One error met while evaluating an expression; the value returned with it is a default."""

    kind: ErrorKind
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class ValueType(enum.Enum):
    """A CESQL primitive type, as a parameter or return type of an operator or function."""

    STRING = "String"
    INTEGER = "Integer"
    BOOLEAN = "Boolean"

    @property
    def zero(self) -> Value:
        """The value an operator of this return type yields after an error (spec §3.3)."""
        return _ZERO[self]


_ZERO: Final[dict[ValueType, Value]] = {
    ValueType.STRING: "",
    ValueType.INTEGER: 0,
    ValueType.BOOLEAN: False,
}


def describe(value: Value, limit: int = 40) -> str:
    """Render a value for an error message, shortened so messages stay bounded."""
    text = repr(value) if type(value) is str else str(value).lower()
    return text if len(text) <= limit else text[: limit - 3] + "..."
