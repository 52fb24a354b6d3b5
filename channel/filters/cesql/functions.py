"""CESQL's built-in functions (spec §3.5) and their dispatch by name and arity.

Each function declares its parameter types; the compiler casts every argument to them before
the call, so an implementation receives values of the declared types. ``INT``, ``BOOL`` and
``STRING`` are therefore identity functions whose work is the argument cast (a failed cast
gives the zero value and a ``cast`` error). An implementation may append its own error and
still return a value (``ABS``, ``LEFT``, ``RIGHT``, ``SUBSTRING``), as the spec requires.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, cast

from channel.filters.cesql.values import INT_MAX, INT_MIN, CesqlError, ErrorKind, Value, ValueType

__all__ = ["Function", "lookup_function"]

Implementation = Callable[[Sequence[Value], list[CesqlError]], Value]

STR, INT, BOOL = ValueType.STRING, ValueType.INTEGER, ValueType.BOOLEAN

# The Unicode White_Space property. str.strip() would also remove the control characters
# U+001C..U+001F, which the spec does not count as white space.
_WHITE_SPACE: Final = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


@dataclass(frozen=True, slots=True)
class Function:
    """One overload: fixed parameter types, optionally a variadic tail, and the return type."""

    name: str
    params: tuple[ValueType, ...]
    returns: ValueType
    implementation: Implementation
    variadic: ValueType | None = None

    def param_type(self, index: int) -> ValueType:
        """The type argument ``index`` is cast to."""
        if index < len(self.params):
            return self.params[index]
        assert self.variadic is not None
        return self.variadic


def _error(errors: list[CesqlError], kind: ErrorKind, message: str) -> None:
    errors.append(CesqlError(kind, message))


def _identity(args: Sequence[Value], errors: list[CesqlError]) -> Value:
    return args[0]


def _length(args: Sequence[Value], errors: list[CesqlError]) -> Value:
    return len(cast(str, args[0]))


def _concat(args: Sequence[Value], errors: list[CesqlError]) -> Value:
    return "".join(cast(Sequence[str], args))


def _concat_ws(args: Sequence[Value], errors: list[CesqlError]) -> Value:
    return cast(str, args[0]).join(cast(Sequence[str], args[1:]))


def _lower(args: Sequence[Value], errors: list[CesqlError]) -> Value:
    return cast(str, args[0]).lower()


def _upper(args: Sequence[Value], errors: list[CesqlError]) -> Value:
    return cast(str, args[0]).upper()


def _trim(args: Sequence[Value], errors: list[CesqlError]) -> Value:
    return cast(str, args[0]).strip(_WHITE_SPACE)


def _left(args: Sequence[Value], errors: list[CesqlError]) -> Value:
    text, count = cast(str, args[0]), cast(int, args[1])
    if count < 0:
        _error(errors, ErrorKind.FUNCTION_EVALUATION, f"LEFT length {count} is negative")
        return text
    return text[:count]


def _right(args: Sequence[Value], errors: list[CesqlError]) -> Value:
    text, count = cast(str, args[0]), cast(int, args[1])
    if count < 0:
        _error(errors, ErrorKind.FUNCTION_EVALUATION, f"RIGHT length {count} is negative")
        return text
    return text[len(text) - count :] if count else ""


def _substring(args: Sequence[Value], errors: list[CesqlError]) -> Value:
    text, position = cast(str, args[0]), cast(int, args[1])
    length = cast(int, args[2]) if len(args) > 2 else None
    size = len(text)
    if position > size or position < -size:
        _error(
            errors,
            ErrorKind.FUNCTION_EVALUATION,
            f"SUBSTRING position {position} is outside a string of length {size}",
        )
        return ""
    if length is not None and length < 0:
        _error(errors, ErrorKind.FUNCTION_EVALUATION, f"SUBSTRING length {length} is negative")
        return ""
    if position == 0:
        return ""
    start = position - 1 if position > 0 else size + position
    return text[start:] if length is None else text[start : start + length]


def _abs(args: Sequence[Value], errors: list[CesqlError]) -> Value:
    number = cast(int, args[0])
    if number == INT_MIN:
        _error(errors, ErrorKind.MATH, f"ABS({INT_MIN}) does not fit in 32 bits")
        return INT_MAX
    return abs(number)


_BUILTINS: Final = (
    Function("LENGTH", (STR,), INT, _length),
    Function("CONCAT", (), STR, _concat, variadic=STR),
    Function("CONCAT_WS", (STR,), STR, _concat_ws, variadic=STR),
    Function("LOWER", (STR,), STR, _lower),
    Function("UPPER", (STR,), STR, _upper),
    Function("TRIM", (STR,), STR, _trim),
    Function("LEFT", (STR, INT), STR, _left),
    Function("RIGHT", (STR, INT), STR, _right),
    Function("SUBSTRING", (STR, INT), STR, _substring),
    Function("SUBSTRING", (STR, INT, INT), STR, _substring),
    Function("ABS", (INT,), INT, _abs),
    Function("INT", (INT,), INT, _identity),
    Function("BOOL", (BOOL,), BOOL, _identity),
    Function("STRING", (STR,), STR, _identity),
)

_FIXED: Final = {(f.name, len(f.params)): f for f in _BUILTINS if f.variadic is None}
_VARIADIC: Final = {f.name: f for f in _BUILTINS if f.variadic is not None}


def lookup_function(name: str, arity: int) -> Function | None:
    """The overload of ``name`` (upper-case) taking ``arity`` arguments, if there is one.

    A fixed-arity overload wins over the variadic one; the variadic one needs at least its
    fixed arguments (so ``CONCAT_WS()`` has no overload).
    """
    function = _FIXED.get((name, arity))
    if function is not None:
        return function
    variadic = _VARIADIC.get(name)
    if variadic is not None and arity >= len(variadic.params):
        return variadic
    return None
