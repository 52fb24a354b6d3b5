"""The compiled forms of Trigger filters: what runs for every event.

Each dialect compiles (in ``channel.filters.dialects``) to one of these frozen dataclasses.
``matches`` is pure, allocates nothing for the attribute dialects, and reads attributes through
the FLT-13 rules (a precomputed getter for the few derived names, a plain ``get`` otherwise).
``exact_requirements`` names the attribute values an event must have to match, which is what
``FilterIndex`` uses to skip filters that cannot match: legacy attributes with a non-empty
value, ``exact``, an ``all`` containing such, and ``attr = 'text'`` conjuncts of ``cesql``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Protocol, runtime_checkable

from channel.filters.attributes import Attributes, Getter
from channel.filters.cesql import CesqlExpression

__all__ = [
    "AllFilter",
    "AnyFilter",
    "AttributesFilter",
    "CesqlFilter",
    "Check",
    "ExactFilter",
    "Filter",
    "IndexableFilter",
    "MatchAll",
    "NotFilter",
    "PrefixFilter",
    "SuffixFilter",
]

Check = tuple[str, str, Getter | None]
"""Attribute name, expected value, and the getter for derived names (None: plain lookup)."""

_NONE: Final[Mapping[str, str]] = MappingProxyType({})


class Filter(Protocol):
    """A compiled Trigger filter: pure, no I/O, compiled once and evaluated per event."""

    def matches(self, attributes: Attributes) -> bool:
        """Whether the event with these context attributes passes."""
        ...


@runtime_checkable
class IndexableFilter(Filter, Protocol):
    """A filter that can tell which attribute values every event it matches has."""

    @property
    def exact_requirements(self) -> Mapping[str, str]:
        """Attribute name to the value it must equal for ``matches`` to be true."""
        ...


def _requirements(checks: Iterable[Check]) -> Mapping[str, str]:
    return MappingProxyType({name: value for name, value, _ in checks if value})


@dataclass(frozen=True, slots=True)
class MatchAll:
    """No filter: every event matches (FLT-06)."""

    @property
    def exact_requirements(self) -> Mapping[str, str]:
        """Nothing is required."""
        return _NONE

    def matches(self, attributes: Attributes) -> bool:
        """Always true."""
        return True


@dataclass(frozen=True, slots=True)
class AttributesFilter:
    """Legacy ``filter.attributes``: each attribute present; non-empty values equal (FLT-10/11)."""

    checks: tuple[Check, ...]
    exact_requirements: Mapping[str, str] = field(compare=False, repr=False)

    @classmethod
    def of(cls, checks: Sequence[Check]) -> AttributesFilter:
        """A filter from its checks; an empty expected value means "present, any value"."""
        return cls(tuple(checks), _requirements(checks))

    def matches(self, attributes: Attributes) -> bool:
        """Every attribute present, and equal (case-sensitively) where a value is given."""
        for name, value, getter in self.checks:
            actual = attributes.get(name) if getter is None else getter(attributes)
            if actual is None or (value and actual != value):
                return False
        return True


@dataclass(frozen=True, slots=True)
class ExactFilter:
    """``exact``: every listed attribute exists and equals its value (FLT-14)."""

    checks: tuple[Check, ...]
    exact_requirements: Mapping[str, str] = field(compare=False, repr=False)

    @classmethod
    def of(cls, checks: Sequence[Check]) -> ExactFilter:
        """A filter from its (non-empty) checks."""
        return cls(tuple(checks), _requirements(checks))

    def matches(self, attributes: Attributes) -> bool:
        """All attributes equal their values; a missing one fails."""
        for name, value, getter in self.checks:
            if (attributes.get(name) if getter is None else getter(attributes)) != value:
                return False
        return True


@dataclass(frozen=True, slots=True)
class PrefixFilter:
    """``prefix``: every listed attribute exists and starts with its value (FLT-15)."""

    checks: tuple[Check, ...]

    @property
    def exact_requirements(self) -> Mapping[str, str]:
        """Nothing exact is required."""
        return _NONE

    def matches(self, attributes: Attributes) -> bool:
        """All attributes start with their values; a missing one fails."""
        for name, value, getter in self.checks:
            actual = attributes.get(name) if getter is None else getter(attributes)
            if actual is None or not actual.startswith(value):
                return False
        return True


@dataclass(frozen=True, slots=True)
class SuffixFilter:
    """``suffix``: every listed attribute exists and ends with its value (FLT-16)."""

    checks: tuple[Check, ...]

    @property
    def exact_requirements(self) -> Mapping[str, str]:
        """Nothing exact is required."""
        return _NONE

    def matches(self, attributes: Attributes) -> bool:
        """All attributes end with their values; a missing one fails."""
        for name, value, getter in self.checks:
            actual = attributes.get(name) if getter is None else getter(attributes)
            if actual is None or not actual.endswith(value):
                return False
        return True


@dataclass(frozen=True, slots=True)
class AllFilter:
    """``all`` (and the ``filters`` list itself): every nested filter matches (FLT-08, FLT-18)."""

    children: tuple[Filter, ...]
    exact_requirements: Mapping[str, str] = field(compare=False, repr=False)

    @classmethod
    def of(cls, children: Sequence[Filter]) -> AllFilter:
        """Combine filters; the requirements of every child are requirements of the whole."""
        required: dict[str, str] = {}
        for child in children:
            if isinstance(child, IndexableFilter):
                for name, value in child.exact_requirements.items():
                    required.setdefault(name, value)
        return cls(tuple(children), MappingProxyType(required))

    def matches(self, attributes: Attributes) -> bool:
        """True iff no child is false (evaluated in order, stopping at the first false)."""
        for child in self.children:  # noqa: SIM110 - all() would allocate a generator per event
            if not child.matches(attributes):
                return False
        return True


@dataclass(frozen=True, slots=True)
class AnyFilter:
    """``any``: at least one nested filter matches (FLT-19)."""

    children: tuple[Filter, ...]

    @property
    def exact_requirements(self) -> Mapping[str, str]:
        """Nothing is required of every match."""
        return _NONE

    def matches(self, attributes: Attributes) -> bool:
        """True iff some child is true (stopping at the first)."""
        for child in self.children:  # noqa: SIM110 - any() would allocate a generator per event
            if child.matches(attributes):
                return True
        return False


@dataclass(frozen=True, slots=True)
class NotFilter:
    """``not``: the nested filter does not match (FLT-20)."""

    child: Filter

    @property
    def exact_requirements(self) -> Mapping[str, str]:
        """Nothing is required of every match."""
        return _NONE

    def matches(self, attributes: Attributes) -> bool:
        """The negation of the child."""
        return not self.child.matches(attributes)


@dataclass(frozen=True, slots=True)
class CesqlFilter:
    """``cesql``: the expression is Boolean ``true`` without any error (FLT-23, SQL-02)."""

    expression: CesqlExpression

    @property
    def exact_requirements(self) -> Mapping[str, str]:
        """The ``attr = 'text'`` conjuncts at the top of the expression."""
        return self.expression.exact_requirements

    def matches(self, attributes: Attributes) -> bool:
        """Evaluate the expression in fail-fast filter mode."""
        return self.expression.matches(attributes)
