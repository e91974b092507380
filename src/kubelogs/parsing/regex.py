"""``regex``: named groups of a user's pattern become fields, with RE2.

Why RE2 (`google-re2`): a user's pattern runs on every line of hostile input. Python's
`re` backtracks: ``(a+)+$`` on a line of 30 ``a`` and a ``b`` takes minutes, and a
timeout (the PyPI `regex` module's) still lets such lines cost their timeout each.
RE2 matches in time linear in the line's length whatever the pattern, at the price of
no backreferences and no lookaround, which `compile_pattern` reports as a config
error. The binding's public `Match` objects cost ~30 us per line (they map UTF-8 byte
offsets back to characters in Python); `_Compiled` calls the compiled `RE2` object's
``Match`` on the UTF-8 bytes instead and slices the groups from the bytes (~5 us),
falling back to the public API if a later binding lacks it.

A pattern is searched anywhere in the line (anchor it with ``^``/``$`` to match the
whole line). Groups that did not take part in the match are left out; ``types``
converts named groups to ``int``, ``float`` or ``bool`` (a value that does not convert
stays a string).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["cast_value", "compile_pattern", "regex_parser"]

_BOOLS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


def cast_value(value: str, kind: str) -> Any:
    """`value` as `kind` (``int``, ``float``, ``bool``, ``string``), or unchanged."""
    if kind == "int":
        if len(value) <= 32:
            try:
                return int(value)
            except ValueError:
                pass
        return value
    if kind == "float":
        if len(value) <= 64:
            try:
                number = float(value)
            except ValueError:
                return value
            if number == number and abs(number) != float("inf"):
                return number
        return value
    if kind == "bool":
        found = _BOOLS.get(value.lower()) if len(value) <= 5 else None
        return value if found is None else found
    return value


class _Compiled:
    """A compiled RE2 pattern: its named groups and a search on one line."""

    def __init__(self, pattern: str) -> None:
        import re2

        options = re2.Options()
        options.log_errors = False  # errors are raised to us, not printed to stderr
        try:
            compiled = re2.compile(pattern, options)
        except re2.error as exc:
            reason = exc.args[0] if exc.args else exc
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            raise ValueError(f"not a valid RE2 pattern: {reason}") from None
        self._public = compiled
        index: dict[str, int] = dict(compiled.groupindex)
        self.groups: list[str] = sorted(index, key=index.__getitem__)
        self._index = [index[g] for g in self.groups]
        raw = getattr(compiled, "_regexp", None)
        anchor = getattr(getattr(type(raw), "Anchor", None), "UNANCHORED", None)
        self._match: Callable[..., Any] | None = (
            raw.Match if raw is not None and anchor is not None else None
        )
        self._anchor = anchor

    def search(self, line: str) -> dict[str, str] | None:
        """The named groups that matched in `line`, or None when it does not match."""
        match = self._match
        if match is None:
            m = self._public.search(line)
            if m is None:
                return None
            return {g: v for g, v in m.groupdict().items() if v is not None}
        data = line.encode("utf-8", "surrogatepass")
        spans = match(self._anchor, data, 0, len(data))
        if spans[0][0] < 0:
            return None
        out: dict[str, str] = {}
        for name, i in zip(self.groups, self._index, strict=True):
            start, end = spans[i]
            if start >= 0:
                out[name] = data[start:end].decode("utf-8", "replace")
        return out


@functools.lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> _Compiled:
    """The compiled pattern; ValueError with RE2's reason, or when it has no named
    group (its matches would add nothing)."""
    compiled = _Compiled(pattern)
    if not compiled.groups:
        raise ValueError("the pattern has no named group (?P<name>...): it would add no field")
    return compiled


def regex_parser(
    pattern: str, types: Mapping[str, str]
) -> Callable[[Sequence[str]], tuple[list[int], list[dict[str, Any]]]]:
    compiled = compile_pattern(pattern)
    search = compiled.search
    casts = dict(types)

    def parse(messages: Sequence[str]) -> tuple[list[int], list[dict[str, Any]]]:
        out: dict[int, dict[str, Any]] = {}
        for row, message in enumerate(messages):
            found = search(message)
            if found is None:
                continue
            if casts:
                for name, kind in casts.items():
                    value = found.get(name)
                    if value is not None:
                        found[name] = cast_value(value, kind)
            out[row] = found
        return list(out), list(out.values())

    return parse
