"""Parses CESQL tokens into a syntax tree, with the spec's precedence and associativity.

Precedence, tightest first (spec §3.6): function calls and atoms; unary ``NOT`` and ``-``;
``LIKE``; ``EXISTS``; ``IN``; ``* / %``; ``+ -``; comparisons; ``AND OR XOR`` (one shared
level). Operators of equal precedence group left to right, as the spec text says; the ANTLR
grammar marks the logic level right-associative, and Kanal follows the text (decision D-12).
The parser uses precedence climbing, so nesting costs few Python frames, and it bounds both
nesting and tree depth so that hostile input gets a parse error, never a ``RecursionError``.
"""

from __future__ import annotations

import re
from typing import Final

from channel.filters.cesql.lexer import CesqlSyntaxError, Token, TokenKind, tokenize
from channel.filters.cesql.nodes import (
    Attribute,
    Binary,
    BinaryOp,
    Call,
    Exists,
    In,
    Like,
    Literal,
    Logical,
    LogicalOp,
    Node,
    Unary,
    UnaryOp,
    depth,
)
from channel.filters.cesql.values import INT_MAX, INT_MIN

__all__ = ["MAX_DEPTH", "MAX_NESTING", "parse"]

MAX_NESTING: Final = 48
"""Most parentheses, prefix operators and call arguments that may enclose one another."""

MAX_DEPTH: Final = 128
"""Most levels the syntax tree may have (a flat ``AND``/``OR`` run counts as one)."""

_LIKE_LEVEL: Final = 6
_IN_LEVEL: Final = 5

_BINARY: Final[dict[TokenKind, tuple[int, BinaryOp | LogicalOp]]] = {
    TokenKind.STAR: (4, BinaryOp.MULTIPLY),
    TokenKind.SLASH: (4, BinaryOp.DIVIDE),
    TokenKind.PERCENT: (4, BinaryOp.MODULO),
    TokenKind.PLUS: (3, BinaryOp.ADD),
    TokenKind.MINUS: (3, BinaryOp.SUBTRACT),
    TokenKind.EQUAL: (2, BinaryOp.EQUAL),
    TokenKind.NOT_EQUAL: (2, BinaryOp.NOT_EQUAL),
    TokenKind.LESS_GREATER: (2, BinaryOp.NOT_EQUAL),
    TokenKind.LESS: (2, BinaryOp.LESS),
    TokenKind.LESS_EQUAL: (2, BinaryOp.LESS_EQUAL),
    TokenKind.GREATER: (2, BinaryOp.GREATER),
    TokenKind.GREATER_EQUAL: (2, BinaryOp.GREATER_EQUAL),
    TokenKind.AND: (1, LogicalOp.AND),
    TokenKind.OR: (1, LogicalOp.OR),
    TokenKind.XOR: (1, LogicalOp.XOR),
}

_ATTRIBUTE_NAME: Final = re.compile(r"[A-Za-z0-9]+")
_FUNCTION_NAME: Final = re.compile(r"[A-Za-z][A-Za-z_]*")


def parse(text: str) -> Node:
    """Parse a whole expression; raises ``CesqlSyntaxError``."""
    return _Parser(tokenize(text)).parse()


class _Parser:
    __slots__ = ("_index", "_nesting", "_tokens")

    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._index = 0
        self._nesting = 0

    def parse(self) -> Node:
        node = self._expression(0)
        token = self._peek()
        if token.kind is not TokenKind.END:
            raise _unexpected(token, "an operator or the end of the expression")
        if depth(node) > MAX_DEPTH:
            raise CesqlSyntaxError(0, f"expression is more than {MAX_DEPTH} levels deep")
        return node

    # -- token access -------------------------------------------------------------------

    def _peek(self, ahead: int = 0) -> Token:
        return self._tokens[min(self._index + ahead, len(self._tokens) - 1)]

    def _next(self) -> Token:
        token = self._tokens[self._index]
        if token.kind is not TokenKind.END:
            self._index += 1
        return token

    def _expect(self, kind: TokenKind, context: str) -> Token:
        token = self._next()
        if token.kind is not kind:
            raise _unexpected(token, f"{kind.value} {context}")
        return token

    def _enter(self, token: Token) -> None:
        self._nesting += 1
        if self._nesting > MAX_NESTING:
            raise CesqlSyntaxError(token.position, f"nested more than {MAX_NESTING} levels deep")

    # -- grammar --------------------------------------------------------------------------

    def _expression(self, min_level: int) -> Node:
        left = self._unary()
        while True:
            token = self._peek()
            kind = token.kind
            negated = False
            if kind is TokenKind.NOT and self._peek(1).kind in (TokenKind.LIKE, TokenKind.IN):
                negated = True
                kind = self._peek(1).kind
            if kind is TokenKind.LIKE:
                if min_level > _LIKE_LEVEL:
                    return left
                self._index += 2 if negated else 1
                pattern = self._next()
                if pattern.kind is not TokenKind.STRING:
                    raise _unexpected(pattern, "a string literal as the LIKE pattern")
                left = Like(left, pattern.text, negated)
            elif kind is TokenKind.IN:
                if min_level > _IN_LEVEL:
                    return left
                self._index += 2 if negated else 1
                left = In(left, self._list(token, "after IN", allow_empty=False), negated)
            elif kind in _BINARY:
                level, op = _BINARY[kind]
                if level < min_level:
                    return left
                self._index += 1
                right = self._expression(level + 1)
                left = _combine(op, left, right)
            else:
                return left

    def _unary(self) -> Node:
        token = self._peek()
        if token.kind is TokenKind.NOT:
            self._index += 1
            self._enter(token)
            operand = self._unary()
            self._nesting -= 1
            return Unary(UnaryOp.NOT, operand)
        if token.kind in (TokenKind.MINUS, TokenKind.PLUS):
            following = self._peek(1)
            # A sign written directly before digits is part of the literal (the grammar's
            # INTEGER_LITERAL), which is how -2147483648 stays in range.
            if following.kind is TokenKind.INTEGER and following.position == token.position + 1:
                self._index += 2
                return Literal(_integer(token.text + following.text, token.position))
            if token.kind is TokenKind.PLUS:
                raise _unexpected(token, "an expression")
            self._index += 1
            self._enter(token)
            operand = self._unary()
            self._nesting -= 1
            return Unary(UnaryOp.NEGATE, operand)
        return self._primary()

    def _primary(self) -> Node:
        token = self._next()
        kind = token.kind
        if kind is TokenKind.INTEGER:
            return Literal(_integer(token.text, token.position))
        if kind is TokenKind.STRING:
            return Literal(token.text)
        if kind is TokenKind.TRUE:
            return Literal(True)
        if kind is TokenKind.FALSE:
            return Literal(False)
        if kind is TokenKind.EXISTS:
            name = self._expect(TokenKind.IDENTIFIER, "after EXISTS")
            return Exists(_attribute_name(name))
        if kind is TokenKind.IDENTIFIER:
            if self._peek().kind is TokenKind.LPAREN:
                if _FUNCTION_NAME.fullmatch(token.text) is None:
                    raise CesqlSyntaxError(token.position, f"invalid function name {token.text!r}")
                args = self._list(token, f"after {token.text}", allow_empty=True)
                return Call(token.text.upper(), args, token.position)
            return Attribute(_attribute_name(token))
        if kind is TokenKind.LPAREN:
            self._enter(token)
            node = self._expression(0)
            self._nesting -= 1
            self._expect(TokenKind.RPAREN, "to close the parenthesis")
            return node
        raise _unexpected(token, "an expression")

    def _list(self, opener: Token, context: str, *, allow_empty: bool) -> tuple[Node, ...]:
        """``( expr, ... )`` for function arguments and IN sets."""
        self._expect(TokenKind.LPAREN, context)
        self._enter(opener)
        items: list[Node] = []
        if self._peek().kind is TokenKind.RPAREN:
            if not allow_empty:
                raise CesqlSyntaxError(self._peek().position, "IN needs at least one value")
            self._index += 1
        else:
            while True:
                items.append(self._expression(0))
                token = self._next()
                if token.kind is TokenKind.RPAREN:
                    break
                if token.kind is not TokenKind.COMMA:
                    raise _unexpected(token, "',' or ')'")
        self._nesting -= 1
        return tuple(items)


def _combine(op: BinaryOp | LogicalOp, left: Node, right: Node) -> Node:
    if isinstance(op, BinaryOp):
        return Binary(op, left, right)
    if isinstance(left, Logical) and left.op is op:
        return Logical(op, (*left.operands, right))
    return Logical(op, (left, right))


def _integer(text: str, position: int) -> int:
    digits = text.lstrip("+-")
    # Check the length first: int() of a huge digit string is slow, then refused.
    value = int(text) if len(digits) <= 10 else INT_MAX + 1
    if not INT_MIN <= value <= INT_MAX:
        raise CesqlSyntaxError(position, f"integer literal {text[:20]} is not a 32-bit integer")
    return value


def _attribute_name(token: Token) -> str:
    if _ATTRIBUTE_NAME.fullmatch(token.text) is None:
        raise CesqlSyntaxError(token.position, f"invalid attribute name {token.text!r}")
    return token.text.lower()


def _unexpected(token: Token, expected: str) -> CesqlSyntaxError:
    found = token.kind.value
    if token.kind in (TokenKind.IDENTIFIER, TokenKind.INTEGER):
        found = f"{found} {token.text[:20]!r}"
    return CesqlSyntaxError(token.position, f"expected {expected}, found {found}")
