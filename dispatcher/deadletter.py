"""What a dead-lettered event carries: the original event plus Knative's error extensions. Pure.

`knativeerrordest` is the destination that failed (the subscriber, or the reply destination
when storing the reply failed). When there was a response: `knativeerrorcode` is its status and
`knativeerrordata` the standard base64 of at most its first 1,024 body bytes (omitted for an
empty body). With no response at all (refused, timed out) both are omitted (D-10): there was no
status to report.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Final

__all__ = ["ERROR_CODE", "ERROR_DATA", "ERROR_DEST", "ORIGIN", "error_extensions", "with_extensions"]

ERROR_DEST: Final = "knativeerrordest"
ERROR_CODE: Final = "knativeerrorcode"
ERROR_DATA: Final = "knativeerrordata"
# On dead letters in a dead-letter topic: whose they are, e.g. "Trigger/ns/name".
ORIGIN: Final = "kanalorigin"


def error_extensions(
    destination: str, status: int | None, body: bytes | None, *, limit: int = 1024
) -> dict[str, str]:
    out = {ERROR_DEST: destination}
    if status is not None:
        out[ERROR_CODE] = str(status)
        if body:
            out[ERROR_DATA] = base64.b64encode(body[:limit]).decode()
    return out


def with_extensions(attributes: Mapping[str, str], extensions: Mapping[str, str]) -> dict[str, str]:
    """The attributes with `extensions` set (replacing earlier values of the same names)."""
    out = {k: v for k, v in attributes.items() if k not in (ERROR_DEST, ERROR_CODE, ERROR_DATA)}
    out.update(extensions)
    return out
