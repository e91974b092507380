"""What every parser does after reading its lines: one column-wise finishing step.

A parser turns the messages of a batch into the rows it could parse and their
fields. `finish` then, for all parsers alike:

1. reads the level (``level_key`` or the usual keys) and normalises it into
   ``log.level`` (`parsing.levels`);
2. reads ``time_key`` and, when it parses, makes it the event's time (``times`` and, if
   the batch has them, ``tstrs``), the field itself staying as parsed;
3. moves keys that kubelogs writes itself (``message``, ``log``, ``@timestamp``, ...)
   under the parser's name (``json.message``), or puts everything under ``target``;
4. flags every row it could not parse ``parse_error`` (the message stays as it was:
   a line is never dropped for failing to parse);
5. returns a new batch (`Batch.derive`) with those fields and flags merged into any the
   batch already had.

Cost: a few C-level passes (``map``, ``dict(zip())``) over the parsed rows, Python work
only for rows with a clashing key, an unusually spelled level or a time to parse.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import methodcaller, setitem
from typing import Any

from kubelogs.codecs.timestamps import format_timestamp
from kubelogs.parsing.levels import LEVELS, NORMAL_LEVELS, normalise_level
from kubelogs.parsing.times import TimeParser
from kubelogs.pipeline.event import Batch

__all__ = ["DEFAULT_LEVEL_KEYS", "PARSE_ERROR", "Finisher", "get_path"]

PARSE_ERROR = "parse_error"
"""The flag (``log.flags``) of an event whose message the parser could not read."""

DEFAULT_LEVEL_KEYS = ("level", "lvl", "severity", "loglevel", "levelname")

_MISSING: Any = object()
_LOG_OBJECTS = {level: {"level": level} for level in NORMAL_LEVELS}
_LOG_BY_RAW: dict[Any, dict[str, str]] = {raw: _LOG_OBJECTS[lv] for raw, lv in LEVELS.items()}
"""A raw level in a usual spelling -> its shared ``log`` object: one lookup per row."""

Parsed = tuple[list[int], list[dict[str, Any]]]
"""A line parser's result: the rows it parsed (ascending) and their fields."""


def get_path(value: Any, parts: Sequence[str]) -> Any:
    """The value at a dotted path split into `parts`, or `_MISSING`; a literal dotted
    key (``{"log.level": ...}``) is found too."""
    if not parts:
        return _MISSING
    if isinstance(value, dict) and len(parts) > 1:
        whole = value.get(".".join(parts), _MISSING)
        if whole is not _MISSING:
            return whole
    for part in parts:
        if not isinstance(value, dict):
            return _MISSING
        value = value.get(part, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


@dataclass(frozen=True, slots=True)
class Finisher:
    """The finishing step of one configured parser (see the module docstring)."""

    name: str
    """The parser's type: the key clashing fields are moved under."""
    clash: frozenset[str] = frozenset()
    """Top-level keys to move under `name` (empty: the parser writes known fields)."""
    target: str | None = None
    level_keys: tuple[str, ...] = ()
    """Keys to read a level from (empty: the parser sets ``log.level`` itself)."""
    time_path: tuple[str, ...] = ()
    time_parser: TimeParser | None = None

    def __call__(self, batch: Batch, parsed: Parsed) -> Batch:
        n = len(batch.messages)
        rows, values = parsed
        times = tstrs = None
        if values:
            logs = self._logs(values) if self.level_keys else None
            if self.time_path and self.time_parser is not None:
                times, tstrs = self._times(batch, rows, values)
            values = self._placed(values)
            if logs is not None:
                # The rows' roots have no `log` key here (it is a clashing key, moved
                # under the parser's name, and a `target` root has only its target).
                # One shared `{"level": ...}` per level: batches and their fields are
                # immutable once built (`pipeline.event`), and a small dict per row
                # would cost more than the rest of this step.
                if not all(logs):
                    deque(
                        map(setitem, compress(values, logs), repeat("log"), filter(None, logs)), 0
                    )
                else:
                    deque(map(setitem, values, repeat("log"), logs), 0)
        flags = batch.flags
        if len(rows) < n:
            failed = range(n) if not rows else set(range(n)).difference(rows)
            flags = _flagged(flags, failed)
        fields: dict[int, dict[str, Any]] | None = dict(zip(rows, values, strict=True))
        if batch.fields:
            merged = dict(batch.fields)
            for row, value in fields.items() if fields else ():
                old = merged.get(row)
                merged[row] = {**old, **value} if old else value
            fields = merged
        changes: dict[str, Any] = {"flags": flags or None, "fields": fields or None}
        if times is not None:
            changes["times"] = times
            changes["tstrs"] = tstrs
        return batch.derive(**changes)

    # -- steps ----------------------------------------------------------------------

    def _logs(self, values: list[dict[str, Any]]) -> list[dict[str, str] | None] | None:
        """Each row's shared ``log`` object (None: no level), or None for no row."""
        try:  # the usual case: every row has the first key, in a known spelling
            logs = list(map(_LOG_BY_RAW.get, map(methodcaller("get", self.level_keys[0]), values)))
        except TypeError:  # an unhashable value (a list or object) somewhere
            logs = [None]
        if all(logs):  # no None (the log objects are not empty)
            return logs
        levels = self._levels(values)
        if levels.count(None) == len(levels):
            return None
        return [_LOG_OBJECTS[lv] if lv is not None else None for lv in levels]

    def _levels(self, values: list[dict[str, Any]]) -> list[str | None]:
        keys = self.level_keys
        first = methodcaller("get", keys[0])
        raw = list(map(first, values))
        for key in keys[1:]:
            if None not in raw:
                break
            getter = methodcaller("get", key)
            raw = [r if r is not None else getter(v) for r, v in zip(raw, values, strict=True)]
        try:
            levels = list(map(LEVELS.get, raw))
        except TypeError:  # an unhashable value (a list or object) somewhere
            return list(map(normalise_level, raw))
        if levels.count(None) > raw.count(None):  # unusual spellings (" Warn", "wArN")
            levels = [
                lv if lv is not None or r is None else normalise_level(r)
                for lv, r in zip(levels, raw, strict=True)
            ]
        return levels

    def _times(
        self, batch: Batch, rows: list[int], values: list[dict[str, Any]]
    ) -> tuple[list[int] | None, list[bytes] | None]:
        parse = self.time_parser
        assert parse is not None
        path = self.time_path
        times = list(batch.times)
        n = len(times)
        tstrs = batch.tstrs
        new_tstrs = list(tstrs) if tstrs is not None and len(tstrs) == n else None
        changed = False
        for row, value in zip(rows, values, strict=True):
            raw = get_path(value, path)
            if raw is _MISSING or raw is None:
                continue
            ns = parse(raw, times[row])
            if ns is None:
                continue
            times[row] = ns
            changed = True
            if new_tstrs is not None:
                new_tstrs[row] = format_timestamp(ns).encode()
        if not changed:
            return None, None
        return times, new_tstrs

    def _placed(self, values: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The top-level fields of each row: under `target`, or with clashing keys moved
        under the parser's name."""
        if self.target is not None:
            target = self.target
            return [{target: v} for v in values]
        clash = self.clash
        if not clash:
            return values
        fine = list(map(clash.isdisjoint, values))
        if all(fine):
            return values
        name = self.name
        out = list(values)
        for i, ok in enumerate(fine):
            if not ok:
                value = dict(values[i])
                moved = {k: value.pop(k) for k in [k for k in value if k in clash]}
                out[i] = {**value, name: moved}
        return out


def _flagged(
    flags: dict[int, tuple[str, ...]] | None, rows: Iterable[int]
) -> dict[int, tuple[str, ...]]:
    flag = (PARSE_ERROR,)
    if not flags:
        return dict.fromkeys(rows, flag)
    out = dict(flags)
    for row in rows:
        old = out.get(row)
        out[row] = old + flag if old else flag
    return out
