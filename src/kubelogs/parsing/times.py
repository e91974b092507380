"""Parsed time values -> integer nanoseconds, for ``time_key`` / ``time_format``.

Formats: ``rfc3339`` (also ISO 8601 with a space or a numeric offset), ``unix``,
``unix_ms``, ``unix_us``, ``unix_ns`` (numbers or numeric strings), or a strftime
pattern (``%d/%b/%Y:%H:%M:%S %z``) read with `datetime.strptime`. A pattern without a
year (klog's ``%m%d %H:%M:%S.%f``, syslog's ``%b %d %H:%M:%S``) takes the year of the
event's runtime time, one year less when that would put the parsed time more than a
day after it (a December line read in January). A time without a zone is UTC.

Only rows whose parser asked for a time pay for this (`datetime.strptime` costs a few
microseconds); the result of a value that does not parse is None and the event keeps
its runtime time.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubelogs.codecs.timestamps import parse_rfc3339_ns

__all__ = ["TimeParser", "check_time_format", "make_time_parser"]

TimeParser = Callable[[Any, int], "int | None"]
"""``parse(value, reference_ns) -> ns | None``; `reference_ns` is the event's runtime
time (for formats without a year)."""

_NS = 1_000_000_000
_DAY_NS = 86_400 * _NS
_UNIX_SCALE = {"unix": _NS, "unix_ms": 1_000_000, "unix_us": 1_000, "unix_ns": 1}
_MAX_NS = 2**63 - 1
_YEAR_DIRECTIVES = ("%Y", "%y", "%G", "%s", "%c", "%x")


def check_time_format(fmt: str) -> str | None:
    """A sentence saying why `fmt` cannot be used, or None when it can."""
    if fmt in _UNIX_SCALE or fmt == "rfc3339":
        return None
    if "%" not in fmt:
        return (
            f"time_format {fmt!r} is neither rfc3339, unix, unix_ms, unix_us, unix_ns "
            "nor a strftime pattern with % directives"
        )
    try:
        datetime.now(UTC).strftime(fmt)
    except ValueError as exc:
        return f"time_format {fmt!r} is not a valid strftime pattern: {exc}"
    return None


def _rfc3339(value: Any, reference: int) -> int | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    ns = parse_rfc3339_ns(value.encode("ascii", "replace"))
    if ns is not None:
        return ns
    try:
        when = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return _datetime_ns(when)


def _datetime_ns(when: datetime) -> int | None:
    try:
        seconds = calendar.timegm(when.utctimetuple())
    except (OverflowError, ValueError):
        return None
    ns = seconds * _NS + when.microsecond * 1_000
    return ns if -_MAX_NS <= ns <= _MAX_NS else None


def _unix(scale: int) -> TimeParser:
    def parse(value: Any, reference: int) -> int | None:
        if isinstance(value, bool):
            return None
        if isinstance(value, str):
            if len(value) > 32:
                return None
            try:
                value = int(value)
            except ValueError:
                try:
                    value = float(value)
                except ValueError:
                    return None
        if isinstance(value, int):
            ns = value * scale
        elif isinstance(value, float) and value == value and abs(value) < 1e20:
            ns = int(value * scale)
        else:
            return None
        return ns if -_MAX_NS <= ns <= _MAX_NS else None

    return parse


def _strptime(fmt: str) -> TimeParser:
    has_year = any(d in fmt for d in _YEAR_DIRECTIVES)
    # strptime cannot read a day-of-month without a year ("0229"): a leap year makes
    # every date valid, and the real year is put in afterwards.
    parse_fmt = fmt if has_year else "%Y " + fmt

    def parse(value: Any, reference: int) -> int | None:
        if not isinstance(value, str) or len(value) > 128:
            return None
        try:
            when = datetime.strptime(value if has_year else "2000 " + value, parse_fmt)
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if has_year:
            return _datetime_ns(when)
        year = datetime.fromtimestamp(reference // _NS, UTC).year
        for y in (year, year - 1):
            try:
                candidate = when.replace(year=y)
            except ValueError:  # 29 February in a year that has none
                continue
            ns = _datetime_ns(candidate)
            if ns is not None and ns <= reference + _DAY_NS:
                return ns
        return None

    return parse


def _syslog() -> TimeParser:
    """RFC 3339 (RFC 5424 lines) or ``Mmm dd hh:mm:ss`` (RFC 3164), the syslog
    parser's own time field."""
    bsd = _strptime("%b %d %H:%M:%S")

    def parse(value: Any, reference: int) -> int | None:
        ns = _rfc3339(value, reference)
        return ns if ns is not None else bsd(value, reference)

    return parse


def make_time_parser(fmt: str) -> TimeParser:
    """The parser of `fmt` (checked with `check_time_format` first; ``syslog`` is the
    syslog parser's own mix of formats)."""
    if fmt == "rfc3339":
        return _rfc3339
    if fmt == "syslog":
        return _syslog()
    scale = _UNIX_SCALE.get(fmt)
    if scale is not None:
        return _unix(scale)
    return _strptime(fmt)
