"""Sizes (`512MiB`, `1GB`, `64k`) and durations (`30s`, `7d`) from text.

Without pydantic, so that commands that only parse a flag (``kubelogs search --since``)
start fast; `config.units` wraps these as config field types.
"""

from __future__ import annotations

import re
from typing import Any

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?)b?\s*$", re.IGNORECASE)
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_FACTORS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_size(value: Any) -> int:
    """Bytes from an int or a string.

    ``KiB``/``MiB``/``GiB`` and bare ``k``/``M``/``G`` are binary (1024-based); ``KB``/``MB``/
    ``GB`` are decimal. Letter case does not matter.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative; a size must be >= 0")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a size like 512MiB")
    m = _SIZE_RE.match(value)
    if not m or (m.group(3) and not m.group(2)):
        raise ValueError(f"{value!r} is not a size like 512MiB, 64KiB or 1GB")
    number, prefix, binary = m.groups()
    power = "kmgtp".find(prefix.lower()) + 1 if prefix else 0
    decimal = bool(prefix) and not binary and value.strip()[-1:] in "bB"
    base = 1000 if decimal else 1024
    return int(float(number) * base**power)


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like ``30s``, ``1m30s``, ``7d``, ``250ms``."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        if value < 0 or value != value or value == float("inf"):
            raise ValueError(f"{value} is not a duration >= 0")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration like 30s")
    text = value.strip().lower()
    if text.replace(".", "", 1).isdigit():
        return float(text)  # plain seconds, e.g. from ${VAR:-30}
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_FACTORS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"{value!r} is not a duration like 30s, 5m or 7d")
    return total
