"""Log levels as applications spell them -> the few values of ECS ``log.level``.

Every logging library spells severities its own way (``E``, ``ERR``, ``error``,
``Error``, ``WARNING``, ``warn``, pino's ``50``, syslog's ``crit``); a search for
``level:error`` should find all of them. The parsers look the raw value up in one dict
(`LEVELS`, a C-level lookup per row) and write the result into ``log.level``; a value
that is not a known spelling leaves ``log.level`` unset rather than inventing a level
(the application's own field is kept as parsed, so nothing is lost).
"""

from __future__ import annotations

from typing import Any

__all__ = ["LEVELS", "NORMAL_LEVELS", "normalise_level"]

NORMAL_LEVELS = ("trace", "debug", "info", "warn", "error", "critical", "fatal")
"""Every value `log.level` can take."""

_SPELLINGS: dict[str, tuple[str, ...]] = {
    "trace": ("t", "trc", "trace", "finest", "verbose", "v"),
    "debug": ("d", "dbg", "debug", "fine", "finer", "config"),
    "info": ("i", "inf", "info", "information", "informational", "notice", "n"),
    "warn": ("w", "wrn", "warn", "warning"),
    "error": ("e", "err", "error", "severe", "eror"),
    "critical": ("c", "crit", "critical", "alert"),
    "fatal": ("f", "ftl", "fatal", "emerg", "emergency", "panic", "dpanic"),
}


def _table() -> dict[Any, str]:
    table: dict[Any, str] = {}
    for level, spellings in _SPELLINGS.items():
        for s in spellings:
            table[s] = level
            table[s.upper()] = level
            table[s.capitalize()] = level
    # Numeric levels of pino and bunyan (10 trace ... 60 fatal), also as strings.
    for number, level in ((10, "trace"), (20, "debug"), (30, "info"), (40, "warn")):
        table[number] = level
        table[str(number)] = level
    for number, level in ((50, "error"), (60, "fatal")):
        table[number] = level
        table[str(number)] = level
    return table


LEVELS: dict[Any, str] = _table()
"""Raw level value (str in the usual cases, or a pino number) -> normal level. Mixed
case such as ``wArN`` is found by `normalise_level`, not by this table."""


def normalise_level(value: Any) -> str | None:
    """The normal level of `value`, or None when it is not a known spelling."""
    if isinstance(value, bool):  # True == 1 would hash like a number
        return None
    if isinstance(value, str):
        found = LEVELS.get(value)
        if found is None and len(value) <= 16:
            found = LEVELS.get(value.strip().lower())
        return found
    if isinstance(value, int):
        return LEVELS.get(value)
    return None
