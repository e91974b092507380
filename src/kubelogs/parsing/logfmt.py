"""``logfmt``: ``key=value`` pairs (Heroku's logfmt, Go's slog/logrus text output)::

    time=2025-01-15T10:00:00Z level=info msg="request done" status=200 dur=1.2ms

Values may be double-quoted with ``\\"`` and ``\\\\`` escapes; a key without ``=`` is
``true``. Values stay strings unless ``types`` casts them. A line is parsed when it has
at least one ``key=value`` pair and nothing that is neither a pair nor a bare key (so
ordinary prose, which has no ``=``, is flagged ``parse_error`` rather than turned into
a field per word). The tokenizer is one regex whose alternatives start with different
characters: no backtracking.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubelogs.parsing.regex import cast_value

__all__ = ["logfmt_parser"]

_PAIR = re.compile(r'\s*([^\s="]+)(?:=(?:"((?:[^"\\]|\\.)*)"|([^\s"]*)))?')
_ESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def _unescape(m: re.Match[str]) -> str:
    c = m.group(1)
    return _ESCAPES.get(c, c)


def parse_logfmt_line(line: str) -> dict[str, Any] | None:
    """The pairs of one line, or None when it is not logfmt."""
    out: dict[str, Any] = {}
    pos = 0
    end = len(line.rstrip())
    pairs = 0
    match = _PAIR.match
    while pos < end:
        m = match(line, pos)
        if m is None or m.end() == pos:
            return None
        key, quoted, plain = m.groups()
        if quoted is not None:
            out[key] = _ESCAPE.sub(_unescape, quoted) if "\\" in quoted else quoted
            pairs += 1
        elif plain is not None:
            out[key] = plain
            pairs += 1
        else:
            out[key] = True
        pos = m.end()
        if pos < end and not line[pos].isspace():
            return None  # `a=b"c` and the like: not a pair boundary
    return out if pairs else None


def logfmt_parser(
    types: Mapping[str, str],
) -> Callable[[Sequence[str]], tuple[list[int], list[dict[str, Any]]]]:
    casts = dict(types)

    def parse(messages: Sequence[str]) -> tuple[list[int], list[dict[str, Any]]]:
        out: dict[int, dict[str, Any]] = {}
        for row, message in enumerate(messages):
            if "=" not in message:
                continue
            found = parse_logfmt_line(message)
            if found is None:
                continue
            for name, kind in casts.items():
                value = found.get(name)
                if isinstance(value, str):
                    found[name] = cast_value(value, kind)
            out[row] = found
        return list(out), list(out.values())

    return parse
