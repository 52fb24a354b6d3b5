"""CloudEvents SQL (CESQL v1.0.0): parse once, compile to closures, evaluate per event.

The language, the evaluation model and Kanal's decisions where the sources disagree are in
``shared/conformance/CESQL-NOTES.md`` and the module docstrings below this package.
"""

from channel.filters.cesql.expression import CesqlExpression, compile_cesql, parse_cesql
from channel.filters.cesql.values import CesqlError, ErrorKind, Value

__all__ = [
    "CesqlError",
    "CesqlExpression",
    "ErrorKind",
    "Value",
    "compile_cesql",
    "parse_cesql",
]
