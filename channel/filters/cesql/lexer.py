"""Turns CESQL text into tokens: literals, identifiers, keywords and operators.

The lexer follows the spec grammar (``CESQLLexer.g4``) with two deliberate choices. Keywords
and function names are case-insensitive, attribute identifiers are lower-cased (the TCK needs
``EXISTS SOURCE`` to find ``source``). A ``+`` or ``-`` is always its own token: the parser
folds a sign into an integer literal where an operand is expected, so ``5-3`` is a subtraction
rather than the grammar's ``5`` followed by the literal ``-3``. Errors raise ``CesqlSyntaxError``
with the offending position.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

__all__ = ["CesqlSyntaxError", "Token", "TokenKind", "tokenize"]


class CesqlSyntaxError(Exception):
    """The text is not a CESQL expression; ``position`` is a 0-based character offset."""

    def __init__(self, position: int, message: str) -> None:
        super().__init__(f"at position {position}: {message}")
        self.position = position
        self.message = message


class TokenKind(enum.Enum):
    """What a token is; the value is how messages name it."""

    INTEGER = "integer literal"
    STRING = "string literal"
    IDENTIFIER = "identifier"
    LPAREN = "'('"
    RPAREN = "')'"
    COMMA = "','"
    PLUS = "'+'"
    MINUS = "'-'"
    STAR = "'*'"
    SLASH = "'/'"
    PERCENT = "'%'"
    EQUAL = "'='"
    NOT_EQUAL = "'!='"
    LESS_GREATER = "'<>'"
    LESS = "'<'"
    LESS_EQUAL = "'<='"
    GREATER = "'>'"
    GREATER_EQUAL = "'>='"
    AND = "AND"
    OR = "OR"
    XOR = "XOR"
    NOT = "NOT"
    LIKE = "LIKE"
    EXISTS = "EXISTS"
    IN = "IN"
    TRUE = "TRUE"
    FALSE = "FALSE"
    END = "end of expression"


@dataclass(frozen=True, slots=True)
class Token:
    """One token. ``text`` is the source text, except for strings (the unescaped content)."""

    kind: TokenKind
    text: str
    position: int


_KEYWORDS: Final = {
    kind.value: kind
    for kind in (
        TokenKind.AND,
        TokenKind.OR,
        TokenKind.XOR,
        TokenKind.NOT,
        TokenKind.LIKE,
        TokenKind.EXISTS,
        TokenKind.IN,
        TokenKind.TRUE,
        TokenKind.FALSE,
    )
}

# Longest first, so '<=' wins over '<'.
_OPERATORS: Final = (
    ("!=", TokenKind.NOT_EQUAL),
    ("<>", TokenKind.LESS_GREATER),
    ("<=", TokenKind.LESS_EQUAL),
    (">=", TokenKind.GREATER_EQUAL),
    ("<", TokenKind.LESS),
    (">", TokenKind.GREATER),
    ("=", TokenKind.EQUAL),
    ("+", TokenKind.PLUS),
    ("-", TokenKind.MINUS),
    ("*", TokenKind.STAR),
    ("/", TokenKind.SLASH),
    ("%", TokenKind.PERCENT),
    ("(", TokenKind.LPAREN),
    (")", TokenKind.RPAREN),
    (",", TokenKind.COMMA),
)

_SPACE: Final = frozenset(" \t\r\n")
_WORD: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_DIGITS: Final = frozenset("0123456789")


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, ending with an ``END`` token."""
    tokens: list[Token] = []
    position, length = 0, len(text)
    while position < length:
        char = text[position]
        if char in _SPACE:
            position += 1
        elif char in _WORD:
            end = position
            while end < length and text[end] in _WORD:
                end += 1
            tokens.append(_word(text[position:end], position))
            position = end
        elif char in "'\"":
            content, end = _string(text, position)
            tokens.append(Token(TokenKind.STRING, content, position))
            position = end
        else:
            for symbol, kind in _OPERATORS:
                if text.startswith(symbol, position):
                    tokens.append(Token(kind, symbol, position))
                    position += len(symbol)
                    break
            else:
                raise CesqlSyntaxError(position, f"unexpected character {char!r}")
    tokens.append(Token(TokenKind.END, "", length))
    return tokens


def _word(word: str, position: int) -> Token:
    if all(char in _DIGITS for char in word):
        return Token(TokenKind.INTEGER, word, position)
    keyword = _KEYWORDS.get(word.upper())
    if keyword is not None:
        return Token(keyword, word, position)
    # Identifiers keep their case here: the parser lower-cases attribute names and
    # upper-cases function names, and checks which characters each may contain.
    return Token(TokenKind.IDENTIFIER, word, position)


def _string(text: str, start: int) -> tuple[str, int]:
    r"""Read a quoted literal starting at ``start``; return its content and the end offset.

    Inside ``'...'`` the sequence ``\'`` stands for ``'`` (inside ``"..."``, ``\"`` for ``"``);
    a doubled quote also stands for one quote, as in SQL (the grammar accepts it, the spec is
    silent). Any other backslash is kept as it is, together with the character after it.
    """
    quote = text[start]
    parts: list[str] = []
    position, length = start + 1, len(text)
    while position < length:
        char = text[position]
        if char == "\\" and position + 1 < length:
            following = text[position + 1]
            parts.append(following if following == quote else char + following)
            position += 2
        elif char == quote:
            if position + 1 < length and text[position + 1] == quote:
                parts.append(quote)
                position += 2
            else:
                return "".join(parts), position + 1
        else:
            parts.append(char)
            position += 1
    raise CesqlSyntaxError(start, "unterminated string literal")
