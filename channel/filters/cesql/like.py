r"""Compiles a ``LIKE`` pattern once into a matcher that runs in linear time.

``%`` matches any run of characters (also none), ``_`` exactly one character, ``\%`` and
``\_`` the literal characters; any other character, a lone backslash included, matches itself
case-sensitively, and the whole value must match (spec §3.4.3). Patterns are split at ``%``
into segments matched in order, the first anchored at the start and the last at the end, each
middle one at its leftmost occurrence; that greedy scheme is exact for ``%`` and never
backtracks, so a hostile pattern cannot make a filter slow. Common shapes (no wildcard,
``abc%``, ``%abc``, ``%abc%``) become plain string methods.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["compile_like"]

Matcher = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class _Segment:
    """Text between two ``%``; ``regex`` is set when it contains ``_`` wildcards."""

    text: str
    regex: re.Pattern[str] | None

    def __len__(self) -> int:
        return len(self.text)

    def matches_at(self, value: str, start: int) -> bool:
        if self.regex is None:
            return value.startswith(self.text, start)
        return self.regex.fullmatch(value, start, start + len(self.text)) is not None

    def find(self, value: str, start: int, end: int) -> int:
        if self.regex is None:
            return value.find(self.text, start, end)
        found = self.regex.search(value, start, end)
        return -1 if found is None else found.start()


def compile_like(pattern: str) -> Matcher:
    """A predicate telling whether a whole value matches ``pattern``."""
    segments = [_segment(chunk) for chunk in _split(pattern)]
    if len(segments) == 1:
        return _whole(segments[0])
    first, *middle, last = segments
    plain = all(segment.regex is None for segment in segments)
    if plain and not middle:
        return _fixed_ends(first.text, last.text)
    if plain and len(middle) == 1 and not first.text and not last.text:
        needle = middle[0].text
        return lambda value: needle in value
    return _general(first, middle, last)


def _split(pattern: str) -> list[list[tuple[str, bool]]]:
    """Split at unescaped ``%``; each chunk lists (character, is_wildcard) pairs."""
    chunks: list[list[tuple[str, bool]]] = [[]]
    index, length = 0, len(pattern)
    while index < length:
        char = pattern[index]
        if char == "\\" and index + 1 < length and pattern[index + 1] in "%_":
            chunks[-1].append((pattern[index + 1], False))
            index += 2
            continue
        if char == "%":
            chunks.append([])
        else:
            chunks[-1].append((char, char == "_"))
        index += 1
    return chunks


def _segment(chunk: list[tuple[str, bool]]) -> _Segment:
    text = "".join(char for char, _ in chunk)
    if not any(wild for _, wild in chunk):
        return _Segment(text, None)
    source = "".join("." if wild else re.escape(char) for char, wild in chunk)
    return _Segment(text, re.compile(source, re.DOTALL))


def _whole(segment: _Segment) -> Matcher:
    if segment.regex is None:
        text = segment.text
        return lambda value: value == text
    return lambda value: len(value) == len(segment) and segment.matches_at(value, 0)


def _fixed_ends(prefix: str, suffix: str) -> Matcher:
    if not suffix:
        return lambda value: value.startswith(prefix)
    if not prefix:
        return lambda value: value.endswith(suffix)
    minimum = len(prefix) + len(suffix)
    return lambda value: len(value) >= minimum and value.startswith(prefix) and value.endswith(suffix)


def _general(first: _Segment, middle: list[_Segment], last: _Segment) -> Matcher:
    minimum = len(first) + len(last) + sum(len(s) for s in middle)

    def matches(value: str) -> bool:
        if len(value) < minimum or not first.matches_at(value, 0):
            return False
        end = len(value) - len(last)
        if not last.matches_at(value, end):
            return False
        position = len(first)
        for segment in middle:
            found = segment.find(value, position, end)
            if found < 0:
                return False
            position = found + len(segment)
        return True

    return matches
