"""Compiles a Trigger's filters, legacy and Subscriptions API dialects, into matchers.

A Trigger filters with either the legacy ``spec.filter.attributes`` map or the ``spec.filters``
list of dialect objects (``exact``, ``prefix``, ``suffix``, ``all``, ``any``, ``not``,
``cesql``); a non-empty list replaces the legacy map (FLT-07), entries of the list are ANDed
(FLT-08), and neither means every event matches (FLT-06). Compilation happens once, when the
Trigger is applied, and validates everything: every problem is collected with its path
(``spec.filters[0].cesql``) before one ``ValidationError`` is raised. Where Knative silently
widens a filter Kanal rejects it instead: empty names or values in ``exact``/``prefix``/
``suffix`` (D-01), empty ``all``/``any`` (D-02), two dialects in one object (D-04). A legacy
empty value means "present with any value" (D-03).

The compiled filters themselves live in ``channel.filters.matchers``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from channel.errors import Problem, ValidationError
from channel.filters.attributes import ATTRIBUTE_NAME, getter_for
from channel.filters.cesql import compile_cesql
from channel.filters.matchers import (
    AllFilter,
    AnyFilter,
    AttributesFilter,
    CesqlFilter,
    Check,
    ExactFilter,
    Filter,
    MatchAll,
    NotFilter,
    PrefixFilter,
    SuffixFilter,
)

__all__ = ["DIALECTS", "compile_trigger_filter"]

DIALECTS: Final = ("exact", "prefix", "suffix", "all", "any", "not", "cesql")
"""The ``filters`` dialects Kanal supports, in the Subscriptions API's order."""

_SUPPORTED: Final = ", ".join(DIALECTS)
_PLAIN_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")


def compile_trigger_filter(
    filter: Mapping[str, object] | None,
    filters: Sequence[object] | None,
    *,
    path: str = "spec",
) -> Filter:
    """Compile a Trigger's ``spec.filter`` and ``spec.filters`` (as parsed from YAML).

    A non-empty ``filters`` replaces ``filter``; both are validated all the same, and every
    problem found is raised in one ``ValidationError`` with paths under ``path``.
    """
    problems: list[Problem] = []
    legacy = _legacy(filter, f"{path}.filter", problems)
    entries: list[Filter | None] = []
    if filters is not None:
        if isinstance(filters, str | bytes) or not isinstance(filters, Sequence):
            problems.append(Problem(f"{path}.filters", "must be a list of filter objects"))
        else:
            entries = [
                _dialect(entry, f"{path}.filters[{index}]", problems) for index, entry in enumerate(filters)
            ]
    if problems:
        raise ValidationError(problems)
    compiled = [entry for entry in entries if entry is not None]
    if not compiled:
        return legacy
    return compiled[0] if len(compiled) == 1 else AllFilter.of(compiled)


def _legacy(spec: object, path: str, problems: list[Problem]) -> Filter:
    if spec is None:
        return MatchAll()
    if not isinstance(spec, Mapping):
        problems.append(Problem(path, "must be an object with an `attributes` map"))
        return MatchAll()
    for key in spec:
        if key != "attributes":
            problems.append(Problem(_key_path(path, key), "unknown field; expected `attributes`"))
    attributes = spec.get("attributes")
    path = f"{path}.attributes"
    if attributes is None:
        return MatchAll()
    if not isinstance(attributes, Mapping):
        problems.append(Problem(path, "must be a map of attribute names to values"))
        return MatchAll()
    checks: list[Check] = []
    for name, value in attributes.items():
        key_path = _key_path(path, name)
        valid_name = _check_name(name, key_path, problems)
        # A YAML null is Go's zero value in Knative: the empty string, "present with any value".
        if value is not None and not isinstance(value, str):
            problems.append(Problem(key_path, "value must be a string"))
        elif valid_name:
            checks.append((name, value or "", getter_for(name)))
    return AttributesFilter.of(checks) if checks else MatchAll()


def _dialect(spec: object, path: str, problems: list[Problem]) -> Filter | None:
    if not isinstance(spec, Mapping):
        problems.append(Problem(path, f"must be an object with one dialect ({_SUPPORTED})"))
        return None
    if not spec:
        problems.append(Problem(path, f"empty filter; give one dialect ({_SUPPORTED})"))
        return None
    if len(spec) > 1:
        names = ", ".join(str(key) for key in spec)
        problems.append(Problem(path, f"multiple dialects found ({names}); use `all` to combine them"))
    compiled: list[Filter | None] = []
    for key, value in spec.items():
        compile_dialect = _COMPILERS.get(key) if isinstance(key, str) else None
        if compile_dialect is None:
            problems.append(
                Problem(
                    _key_path(path, key),
                    f"unsupported filter dialect {str(key)!r}; supported: {_SUPPORTED}",
                )
            )
        else:
            compiled.append(compile_dialect(value, _key_path(path, key), problems))
    return compiled[0] if len(spec) == 1 and compiled else None


def _attribute_checks(spec: object, path: str, problems: list[Problem]) -> list[Check] | None:
    """The ``name: value`` map of ``exact``, ``prefix`` or ``suffix``; None if invalid."""
    if not isinstance(spec, Mapping):
        problems.append(Problem(path, "must be a map of attribute names to values"))
        return None
    if not spec:
        problems.append(Problem(path, "must name at least one attribute"))
        return None
    checks: list[Check] = []
    valid = True
    for name, value in spec.items():
        key_path = _key_path(path, name)
        valid = _check_name(name, key_path, problems) and valid
        if value is None or value == "":
            problems.append(Problem(key_path, "value must not be empty"))
            valid = False
        elif not isinstance(value, str):
            problems.append(Problem(key_path, "value must be a string"))
            valid = False
        elif valid:
            checks.append((name, value, getter_for(name)))
    return checks if valid else None


def _exact(spec: object, path: str, problems: list[Problem]) -> Filter | None:
    checks = _attribute_checks(spec, path, problems)
    return None if checks is None else ExactFilter.of(checks)


def _prefix(spec: object, path: str, problems: list[Problem]) -> Filter | None:
    checks = _attribute_checks(spec, path, problems)
    return None if checks is None else PrefixFilter(tuple(checks))


def _suffix(spec: object, path: str, problems: list[Problem]) -> Filter | None:
    checks = _attribute_checks(spec, path, problems)
    return None if checks is None else SuffixFilter(tuple(checks))


def _nested(spec: object, path: str, problems: list[Problem]) -> list[Filter] | None:
    """The filter list of ``all`` or ``any``; None if invalid."""
    if isinstance(spec, str | bytes) or not isinstance(spec, Sequence):
        problems.append(Problem(path, "must be a list of filter objects"))
        return None
    if not spec:
        problems.append(Problem(path, "must contain at least one filter"))
        return None
    children = [_dialect(child, f"{path}[{index}]", problems) for index, child in enumerate(spec)]
    compiled = [child for child in children if child is not None]
    return compiled if len(compiled) == len(children) else None


def _all(spec: object, path: str, problems: list[Problem]) -> Filter | None:
    children = _nested(spec, path, problems)
    return None if children is None else AllFilter.of(children)


def _any(spec: object, path: str, problems: list[Problem]) -> Filter | None:
    children = _nested(spec, path, problems)
    return None if children is None else AnyFilter(tuple(children))


def _not(spec: object, path: str, problems: list[Problem]) -> Filter | None:
    if not isinstance(spec, Mapping):
        problems.append(Problem(path, "must be one filter object"))
        return None
    child = _dialect(spec, path, problems)
    return None if child is None else NotFilter(child)


def _cesql(spec: object, path: str, problems: list[Problem]) -> Filter | None:
    if not isinstance(spec, str):
        problems.append(Problem(path, "must be a CESQL expression (a string)"))
        return None
    try:
        return CesqlFilter(compile_cesql(spec))
    except ValidationError as error:
        problems.extend(Problem(path, problem.message) for problem in error.problems)
        return None


_COMPILERS: Final[dict[str, Callable[[object, str, list[Problem]], Filter | None]]] = {
    "exact": _exact,
    "prefix": _prefix,
    "suffix": _suffix,
    "all": _all,
    "any": _any,
    "not": _not,
    "cesql": _cesql,
}


def _check_name(name: object, path: str, problems: list[Problem]) -> bool:
    """FLT-12: a filter key starts with a lower-case letter, then lower-case letters and digits."""
    if not isinstance(name, str):
        problems.append(Problem(path, "attribute name must be a string"))
    elif not name:
        problems.append(Problem(path, "attribute name must not be empty"))
    elif ATTRIBUTE_NAME.fullmatch(name) is None:
        problems.append(
            Problem(
                path,
                f"invalid attribute name {name!r}: it must start with a lower-case letter "
                "and contain only lower-case letters and digits",
            )
        )
    else:
        return True
    return False


def _key_path(path: str, key: object) -> str:
    """``path.key``, or ``path["key"]`` when the key would make the dotted path ambiguous."""
    if isinstance(key, str) and _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key) if isinstance(key, str) else repr(key)}]"
