"""The admin API's bearer tokens: which ones the controller accepts, and how a request is judged.

Every call to the controller's admin API except health and metrics carries
``Authorization: Bearer <token>``. The controller holds the tokens it accepts (a token file,
KANAL_CONTROLLER_TOKEN_FILE, one a line, and KANAL_CONTROLLER_TOKEN) only as SHA-256 digests,
and compares the digest of the one presented with each of them in constant time: neither the
time taken nor an early exit tells a caller how much of a guess was right, or which token
matched. A token is at least `MIN_TOKEN_CHARS` characters of printable ASCII without spaces, so a
short guessable one is refused at start rather than accepted.

Pure: reading the files and writing the one `kanal dev` makes is `channel.control.token_files`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from channel.errors import Problem, ValidationError

__all__ = [
    "INVALID",
    "MAX_TOKENS",
    "MIN_TOKEN_CHARS",
    "MISSING",
    "AdminTokens",
    "Refusal",
    "TokenCheck",
    "is_loopback",
    "parse_tokens",
    "token_problem",
]

MIN_TOKEN_CHARS: Final = 16
MAX_TOKEN_CHARS: Final = 4096
# Enough for every token of a rotation; a file with more is not a token file.
MAX_TOKENS: Final = 64


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a call was refused, and the challenge its 401 carries (RFC 6750: a request without
    a bearer token gets the bare one)."""

    message: str
    challenge: str


MISSING: Final = Refusal(
    "this call needs a bearer token: Authorization: Bearer <token>", 'Bearer realm="kanal"'
)
INVALID: Final = Refusal(
    "the bearer token is not valid for this controller", 'Bearer realm="kanal", error="invalid_token"'
)


class TokenCheck(Protocol):
    """Judges the Authorization header of one admin call: None to let it in, else why not."""

    def refusal(self, authorization: str | None) -> Refusal | None: ...


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _bearer(authorization: str | None) -> str | None:
    """The token of `Bearer <token>` (the scheme in any case), or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


@dataclass(frozen=True, slots=True)
class AdminTokens:
    """The tokens the admin API accepts, as digests."""

    digests: tuple[bytes, ...]

    @classmethod
    def of(cls, tokens: Iterable[str]) -> AdminTokens:
        return cls(tuple(_digest(token) for token in tokens))

    def refusal(self, authorization: str | None) -> Refusal | None:
        token = _bearer(authorization)
        if token is None:
            return MISSING
        presented = _digest(token)
        accepted = False
        for known in self.digests:  # every one, whatever matched before
            accepted |= hmac.compare_digest(presented, known)
        return None if accepted else INVALID


def token_problem(token: str) -> str | None:
    """What is wrong with one token, or None."""
    if len(token) < MIN_TOKEN_CHARS:
        return f"a token needs at least {MIN_TOKEN_CHARS} characters, this one has {len(token)}"
    if len(token) > MAX_TOKEN_CHARS:
        return f"a token has at most {MAX_TOKEN_CHARS} characters"
    if not all("!" <= c <= "~" for c in token):
        return "a token is printable ASCII without spaces"
    return None


def parse_tokens(text: str, source: str) -> list[str]:
    """The tokens of a token file: one a line; blank lines and lines starting with `#` are
    skipped. Raises ValidationError listing every bad line (by number, never its text)."""
    tokens: list[str] = []
    problems: list[Problem] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if (problem := token_problem(line)) is not None:
            problems.append(Problem(f"{source} line {number}", problem))
        tokens.append(line)
    if not tokens and not problems:
        problems.append(Problem(source, "holds no token (one a line)"))
    if len(tokens) > MAX_TOKENS:
        problems.append(Problem(source, f"holds {len(tokens)} tokens, at most {MAX_TOKENS}"))
    if problems:
        raise ValidationError(problems)
    return tokens


def is_loopback(host: str) -> bool:
    """Whether a server bound to `host` is reachable from this machine only. The empty host and
    0.0.0.0 are every interface; a name other than localhost may resolve anywhere."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
