"""The explorer's time range: what the URL says (``range=1h`` or ``from``/``to``) in
nanoseconds, and the rule that an empty recent range shows the newest data instead.

A relative range (``15m``, ``1h``, ``24h``, ``7d``; any duration ``kubelogs search
--since`` accepts) ends now; ``all`` has no bounds; ``from``/``to`` are RFC 3339 times or
nanoseconds since the epoch (what drag-to-zoom sends). When the newest stored event is
older than the start of a relative range, the range is moved to end at that event
(`TimeRange.shifted`): a page of nothing is worse than a page that says the data is old.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


class RangeError(ValueError):
    """A range the page cannot use; the message names the parameter."""


@dataclass(frozen=True, slots=True)
class TimeRange:
    lo: int | None
    hi: int | None
    relative_ns: int | None = None
    """The width of a relative range (None: absolute or all)."""
    shifted: bool = False
    """The relative range was moved back to end at the newest event."""

    def to_json(self) -> dict[str, object]:
        # Text: JSON numbers above 2**53 lose digits in a browser.
        text = {k: None if v is None else str(v) for k, v in (("from", self.lo), ("to", self.hi))}
        return {**text, "shifted": self.shifted}


def _instant(name: str, text: str) -> int:
    from kubelogs.store.matcher import parse_time_ns

    text = text.strip()
    if text.isdigit():
        return int(text)
    when = parse_time_ns(text)
    if when is None:
        raise RangeError(f"{name}={text!r}: not an RFC 3339 time or nanoseconds since the epoch")
    return when


def parse_range(params: dict[str, str], *, now_ns: int | None = None) -> TimeRange:
    """The range of a request's query parameters (default: the last hour)."""
    from kubelogs.config.unit_parsers import parse_duration

    now = time.time_ns() if now_ns is None else now_ns
    lo_text, hi_text = params.get("from"), params.get("to")
    if lo_text or hi_text:
        lo = _instant("from", lo_text) if lo_text else None
        hi = _instant("to", hi_text) if hi_text else None
        if lo is not None and hi is not None and lo > hi:
            raise RangeError("from is after to: nothing can match")
        return TimeRange(lo, hi)
    text = (params.get("range") or "1h").strip()
    if text == "all":
        return TimeRange(None, None)
    try:
        if text.replace(".", "", 1).isdigit():  # 15: minutes? seconds? (as the CLI)
            raise ValueError(text)
        width = int(parse_duration(text) * 1e9)
    except ValueError:
        raise RangeError(f"range={text!r}: not a duration like 15m, 1h, 24h or 7d") from None
    if width <= 0:
        raise RangeError(f"range={text!r}: must be longer than zero")
    return TimeRange(now - width, None, width)


def shift_to_data(r: TimeRange, newest_ns: int | None) -> TimeRange:
    """`r` moved back to end at `newest_ns` when it is a relative range that starts
    after the newest event; otherwise `r`."""
    if r.relative_ns is None or newest_ns is None or r.lo is None or newest_ns >= r.lo:
        return r
    return TimeRange(newest_ns - r.relative_ns, newest_ns, r.relative_ns, shifted=True)
