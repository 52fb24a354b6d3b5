"""The six implicit and explicit casts between CESQL's primitive types (spec §3.7).

Operators and functions call these to bring operands to their parameter types. A cast that
cannot succeed (only String to Integer and String to Boolean can fail) appends a ``cast`` error
to the caller's error list and returns the target type's zero value; the caller then returns its
own zero value. Integer to Boolean is a supported cast (non-zero is true), as the spec's table
says, although one TCK case expects otherwise (see ``tests/unit/filters/test_cesql_tck.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from channel.filters.cesql.values import (
    INT_MAX,
    INT_MIN,
    CesqlError,
    ErrorKind,
    Value,
    ValueType,
    describe,
)

__all__ = ["Caster", "caster_for", "to_bool", "to_int", "to_str", "type_of"]

Caster = Callable[[Value, list[CesqlError]], Value]
"""Casts a value to one type, appending a ``cast`` error (and returning zero) on failure."""

# ASCII digits only: Python's int() would also accept '1_000', ' 5 ' and non-ASCII digits.
_INTEGER_TEXT: Final = re.compile(r"[+-]?[0-9]{1,10}")


def to_str(value: Value, errors: list[CesqlError] | None = None) -> str:
    """Integer in base 10, Boolean as ``true``/``false``; never fails."""
    if type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    return str(value)


def to_int(value: Value, errors: list[CesqlError]) -> int:
    """Boolean as 1/0; a String must be a base-10 32-bit integer with an optional sign."""
    if type(value) is int:
        return value
    if type(value) is bool:
        return 1 if value else 0
    if type(value) is str and _INTEGER_TEXT.fullmatch(value) is not None:
        number = int(value)
        if INT_MIN <= number <= INT_MAX:
            return number
    errors.append(CesqlError(ErrorKind.CAST, f"cannot cast {describe(value)} to Integer"))
    return 0


def to_bool(value: Value, errors: list[CesqlError]) -> bool:
    """Integer 0 is false and any other true; a String must be ``true`` or ``false`` in any case."""
    if type(value) is bool:
        return value
    if type(value) is int:
        return value != 0
    if type(value) is str:
        lowered = value.lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
    errors.append(CesqlError(ErrorKind.CAST, f"cannot cast {describe(value)} to Boolean"))
    return False


_CASTERS: Final[dict[ValueType, Caster]] = {
    ValueType.STRING: to_str,
    ValueType.INTEGER: to_int,
    ValueType.BOOLEAN: to_bool,
}


def caster_for(target: ValueType) -> Caster:
    """The cast to ``target`` with the uniform ``(value, errors)`` signature."""
    return _CASTERS[target]


def type_of(value: Value) -> ValueType:
    """The CESQL type of a Python value."""
    kind = type(value)
    if kind is bool:
        return ValueType.BOOLEAN
    if kind is int:
        return ValueType.INTEGER
    return ValueType.STRING
