"""Query text -> `store.query` tree, with lark (LALR, built once per process).

Grammar, loosest binding first: ``or``, then ``and`` (also implied between two terms),
then ``not``; parentheses group. Keywords are case-insensitive whole words, so
``android`` is a word and ``AND`` a keyword; to search for the word "and", quote it.
A term is ``field:value``, ``field:"a phrase"``, ``field >= value`` (``>``, ``<``,
``<=``), a bare word or a quoted phrase. Field names are dotted paths
(``kubernetes.labels.app``). Values after ``:`` or a comparison may contain ``:``
(``@timestamp >= 2025-01-15T10:00:00Z``); a value with spaces or parentheses is quoted,
with ``\\"`` and ``\\\\`` as escapes.

A syntax error raises `QuerySyntaxError` with the 1-based column of the first character
that could not be used, so the CLI can print a caret under it.
"""

from __future__ import annotations

import functools
import re
from typing import Any, cast

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from kubelogs.store.errors import QuerySyntaxError
from kubelogs.store.query import And, Exists, Match, MatchAll, Node, Not, Or, Range, RangeOp

_GRAMMAR = r"""
?start: expr?
?expr: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: not_expr (_AND? not_expr)*
?not_expr: _NOT not_expr -> negate
         | atom
?atom: "(" expr ")"
     | WORD ":" value          -> field_match
     | WORD OP value           -> field_range
     | (WORD | QUOTED)         -> bare
?value: WORD | VALUE | QUOTED

_OR.3: /or(?![^\s():"<>=])/i
_AND.3: /and(?![^\s():"<>=])/i
_NOT.3: /not(?![^\s():"<>=])/i
OP.2: />=|<=|>|</
QUOTED: /"(?:[^"\\]|\\.)*"/
WORD: /[^\s():"<>=]+/
VALUE: /[^\s()"<>=:][^\s()"<>=]*/
%ignore /\s+/
"""

_ESCAPE = re.compile(r"\\(.)")


@functools.cache
def _parser() -> Lark:
    return Lark(_GRAMMAR, parser="lalr", lexer="contextual", maybe_placeholders=False)


def _unquote(tok: Token) -> tuple[str, bool]:
    text = str(tok)
    if tok.type == "QUOTED":
        return _ESCAPE.sub(r"\1", text[1:-1]), True
    return text, False


@v_args(inline=True)
class _ToAst(Transformer[Token, Node]):
    def start(self, *items: Node) -> Node:
        return items[0] if items else MatchAll()

    def or_expr(self, *items: Node) -> Node:
        return Or(tuple(items))

    def and_expr(self, *items: Node) -> Node:
        return And(tuple(items))

    def negate(self, item: Node) -> Node:
        return Not(item)

    def bare(self, tok: Token) -> Node:
        value, quoted = _unquote(tok)
        if not quoted and value.strip("*") == "":
            return MatchAll()
        return Match(None, value, quoted)

    def field_match(self, field: Token, tok: Token) -> Node:
        value, quoted = _unquote(tok)
        if not quoted and value == "*":
            return Exists(str(field))
        return Match(str(field), value, quoted)

    def field_range(self, field: Token, op: Token, tok: Token) -> Node:
        value, _ = _unquote(tok)
        return Range(str(field), cast(RangeOp, str(op)), value)


def parse_query(text: str) -> Node:
    """Parse `text`; an empty or blank query matches everything."""
    if not text.strip():
        return MatchAll()
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    if isinstance(tree, Token):  # a lone value: `?start` inlined it
        return _ToAst().bare(tree)
    result: Node = _ToAst().transform(tree)
    return result


def _syntax_error(text: str, exc: UnexpectedInput) -> QuerySyntaxError:
    if isinstance(exc, UnexpectedEOF):
        column = len(text.rstrip()) + 1
        return QuerySyntaxError(f"the query ends too early at column {column}", text, column)
    column = max(int(getattr(exc, "column", 1) or 1), 1)
    if isinstance(exc, UnexpectedToken) and exc.token.type == "$END":
        column = len(text.rstrip()) + 1
        return QuerySyntaxError(f"the query ends too early at column {column}", text, column)
    if isinstance(exc, UnexpectedCharacters):
        char = text[column - 1] if column <= len(text) else ""
        what = "an unterminated quote" if char == '"' else f"unexpected {char!r}"
        return QuerySyntaxError(f"{what} at column {column}", text, column)
    token: Any = getattr(exc, "token", "")
    return QuerySyntaxError(f"unexpected {str(token)!r} at column {column}", text, column)
