"""The admin API's token check: which Authorization headers get in, what a token file may hold,
and which bind addresses count as this machine only."""

from __future__ import annotations

import pytest

from channel.control.tokens import (
    INVALID,
    MAX_TOKENS,
    MIN_TOKEN_CHARS,
    MISSING,
    AdminTokens,
    Refusal,
    is_loopback,
    parse_tokens,
)
from channel.errors import ValidationError

TOKEN = "k" * 20 + "-first"
OTHER = "z" * 20 + "-second"
TOKENS = AdminTokens.of([TOKEN, OTHER])


@pytest.mark.parametrize(
    ("authorization", "refusal"),
    [
        pytest.param(None, MISSING, id="no header"),
        pytest.param("", MISSING, id="empty header"),
        pytest.param("Bearer", MISSING, id="scheme without token"),
        pytest.param("Bearer   ", MISSING, id="scheme and spaces"),
        pytest.param(f"Basic {TOKEN}", MISSING, id="another scheme"),
        pytest.param(f"Bearer {TOKEN}", None, id="the first token"),
        pytest.param(f"Bearer {OTHER}", None, id="the second token"),
        pytest.param(f"bearer {TOKEN}", None, id="scheme in lower case"),
        pytest.param(f"Bearer  {TOKEN} ", None, id="spaces around the token"),
        pytest.param(f"Bearer {TOKEN[:-1]}", INVALID, id="a prefix of a token"),
        pytest.param(f"Bearer {TOKEN}x", INVALID, id="a token and more"),
        pytest.param(f"Bearer {TOKEN.upper()}", INVALID, id="another case"),
        pytest.param("Bearer \u00e9t\u00e9-" + "x" * 20, INVALID, id="not ASCII"),
    ],
)
def test_a_call_gets_in_only_with_an_accepted_bearer_token(
    authorization: str | None, refusal: Refusal | None
) -> None:
    assert TOKENS.refusal(authorization) == refusal


def test_tokens_are_kept_as_digests_only() -> None:
    assert all(TOKEN.encode() not in digest for digest in TOKENS.digests)
    assert len(TOKENS.digests) == 2 and {len(d) for d in TOKENS.digests} == {32}


def test_no_tokens_let_nothing_in() -> None:
    assert AdminTokens.of([]).refusal(f"Bearer {TOKEN}") == INVALID


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        pytest.param(f"{TOKEN}\n", [TOKEN], id="one"),
        pytest.param(f"{TOKEN}", [TOKEN], id="no final newline"),
        pytest.param(
            f"# rotated on Monday\n\n{TOKEN}\r\n  {OTHER}  \n", [TOKEN, OTHER], id="comments, blanks, CRLF"
        ),
    ],
)
def test_a_token_file_holds_one_token_a_line(text: str, tokens: list[str]) -> None:
    assert parse_tokens(text, "tokens.txt") == tokens


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        pytest.param("", ["tokens.txt: holds no token (one a line)"], id="empty"),
        pytest.param("# only a comment\n", ["tokens.txt: holds no token (one a line)"], id="comment only"),
        pytest.param(
            f"{TOKEN}\nshort\n",
            [f"tokens.txt line 2: a token needs at least {MIN_TOKEN_CHARS} characters, this one has 5"],
            id="short",
        ),
        pytest.param(
            "two words in one line\n" + "x" * 5000 + "\n",
            [
                "tokens.txt line 1: a token is printable ASCII without spaces",
                "tokens.txt line 2: a token has at most 4096 characters",
            ],
            id="every bad line",
        ),
        pytest.param(
            "".join(f"{TOKEN}{i:03}\n" for i in range(MAX_TOKENS + 1)),
            [f"tokens.txt: holds {MAX_TOKENS + 1} tokens, at most {MAX_TOKENS}"],
            id="too many",
        ),
    ],
)
def test_a_bad_token_file_is_refused_with_every_problem(text: str, problems: list[str]) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_tokens(text, "tokens.txt")
    assert [str(p) for p in caught.value.problems] == problems
    assert "short\n" not in str(caught.value)  # a line is named by number, never shown


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("0.0.0.0", False),
        ("", False),
        ("::", False),
        ("10.0.0.5", False),
        ("kanal-controller", False),
        ("localhost.example.com", False),
    ],
)
def test_which_addresses_are_this_machine_only(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
