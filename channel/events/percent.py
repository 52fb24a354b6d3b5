"""Header value encoding of the CloudEvents HTTP binding.

Receiving: undo RFC 7230 double-quoting (with backslash escapes), then exactly one round of
percent-decoding, then UTF-8 (invalid UTF-8, such as the overlong `%C0%A0`, is an error).
Sending: percent-encode space, `"`, `%` and everything outside U+0021..U+007E as UTF-8 bytes
with upper-case hex, and nothing else. Kafka headers hold the decoded text, never the encoding.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

__all__ = ["decode_header_value", "encode_header_value"]

_SAFE = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "%"}


def decode_header_value(raw: bytes) -> str:
    """The attribute value carried by a `ce-` header; raises UnicodeDecodeError for invalid UTF-8."""
    if len(raw) >= 2 and raw[:1] == b'"' and raw[-1:] == b'"':
        inner = raw[1:-1]
        out = bytearray()
        i = 0
        while i < len(inner):
            if inner[i] == 0x5C and i + 1 < len(inner):  # backslash escapes the next octet
                i += 1
            out.append(inner[i])
            i += 1
        raw = bytes(out)
    if b"%" in raw:
        raw = unquote_to_bytes(raw)
    return raw.decode("utf-8")


def encode_header_value(value: str) -> str:
    """`value` as a header value: only what must be percent-encoded is."""
    if all(c in _SAFE for c in value):
        return value
    out = []
    for char in value:
        if char in _SAFE:
            out.append(char)
        else:
            out.extend(f"%{b:02X}" for b in char.encode("utf-8", "surrogatepass"))
    return "".join(out)
