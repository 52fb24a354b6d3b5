"""Trigger filters: the legacy attributes map, the Subscriptions API dialects and CESQL.

Everything here is pure and compiled once when a Trigger is applied: ``compile_trigger_filter``
validates a Trigger's ``spec.filter``/``spec.filters`` and returns a ``Filter``;
``FilterIndex`` matches one event against all Triggers of a Broker; ``compile_cesql`` is the
CESQL engine on its own. No module here does I/O.
"""

from channel.filters.attributes import Attributes, lookup
from channel.filters.cesql import CesqlError, CesqlExpression, ErrorKind, compile_cesql, parse_cesql
from channel.filters.dialects import DIALECTS, compile_trigger_filter
from channel.filters.index import FilterIndex
from channel.filters.matchers import Filter, IndexableFilter

__all__ = [
    "DIALECTS",
    "Attributes",
    "CesqlError",
    "CesqlExpression",
    "ErrorKind",
    "Filter",
    "FilterIndex",
    "IndexableFilter",
    "compile_cesql",
    "compile_trigger_filter",
    "lookup",
    "parse_cesql",
]
