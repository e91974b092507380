"""RFC 3339 timestamps -> integer nanoseconds, fast for the runtime's usual shape.

containerd and Docker write ``2025-01-15T10:00:00.123456789Z`` (Go's RFC3339Nano, which
drops trailing zeros of the fraction); CRI-O may write a numeric offset
(``+02:00``). The seconds part is converted once per distinct second (cached), the
fraction with one `int()`: a few hundred nanoseconds per line.
"""

from __future__ import annotations

import calendar
import time

_SEC_CACHE: dict[bytes, int] = {}


def _seconds(prefix: bytes) -> int | None:
    sec = _SEC_CACHE.get(prefix)
    if sec is None:
        try:
            sec = calendar.timegm(time.strptime(prefix.decode("ascii"), "%Y-%m-%dT%H:%M:%S"))
        except (ValueError, UnicodeDecodeError):
            return None
        if len(_SEC_CACHE) > 8192:
            _SEC_CACHE.clear()
        _SEC_CACHE[prefix] = sec
    return sec


def parse_rfc3339_ns(ts: bytes) -> int | None:
    """Nanoseconds since the epoch, or None if `ts` is not an RFC 3339 timestamp."""
    sec = _seconds(ts[:19])
    if sec is None:
        return None
    if len(ts) == 30 and ts[29] == 90 and ts[19] == 46:  # "...SS.nnnnnnnnnZ"
        frac = ts[20:29]
        if frac.isdigit():
            return sec * 1_000_000_000 + int(frac)
        return None
    rest = ts[19:]
    if rest.endswith(b"Z") or rest.endswith(b"z"):
        body, offset = rest[:-1], 0
    elif len(rest) >= 6 and rest[-6] in b"+-" and rest[-3] == 58:  # "+HH:MM"
        hh, mm = rest[-5:-3], rest[-2:]
        if not (hh.isdigit() and mm.isdigit()):
            return None
        offset = (int(hh) * 3600 + int(mm) * 60) * (1 if rest[-6] == 43 else -1)
        body = rest[:-6]
    else:
        return None
    if not body:
        frac_ns = 0
    elif body[0] == 46 and body[1:].isdigit() and len(body) > 1:
        frac_ns = int(body[1:10].ljust(9, b"0"))
    else:
        return None
    return (sec - offset) * 1_000_000_000 + frac_ns


_FMT_CACHE: dict[int, str] = {}


def format_timestamp(ns: int) -> str:
    """RFC 3339 UTC with nanoseconds: ``2021-02-15T10:00:00.123456789Z``."""
    sec, frac = divmod(ns, 1_000_000_000)
    prefix = _FMT_CACHE.get(sec)
    if prefix is None:
        if len(_FMT_CACHE) > 4096:
            _FMT_CACHE.clear()
        prefix = _FMT_CACHE[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{prefix}.{frac:09d}Z"
