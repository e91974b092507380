"""What the line-codec tests (CRI, Docker json-file) check the same way: times computed
independently of the codecs, the rows a parser appended, and the shared rule for a line
that is not in the format (kept whole, no stream, the read time, flagged ``malformed``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from kubelogs.codecs.columns import Columns

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ns(text: str) -> int:
    """Nanoseconds of a `YYYY-mm-ddTHH:MM:SS[.fffffffff]` UTC time, computed with datetime."""
    whole, _, frac = text.partition(".")
    dt = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return (dt - EPOCH) // timedelta(seconds=1) * 1_000_000_000 + int(frac.ljust(9, "0") or 0)


T1_NS = ns("2021-02-15T10:00:00.123456789")
T2_NS = ns("2021-02-15T10:00:01.5")
T3_NS = ns("2021-02-15T10:00:02")


def rows(cols: Columns) -> list[tuple[int, str, str, int]]:
    """(time, message, stream, offset) of every row."""
    return list(zip(cols.times, cols.messages, cols.streams, cols.offsets, strict=True))


Parse = Callable[..., tuple[Columns, int]]


def check_kept_whole_and_malformed(parse: Parse, raw: bytes, offset: int) -> None:
    """`raw`, not in the parser's format, is one row: the line itself as the message, no
    stream, its offset, the time it was read, and the ``malformed`` flag."""
    before = time.time_ns()

    cols, _ = parse([raw], offset=offset)

    after = time.time_ns()
    assert [(raw.decode(), "", offset)] == list(
        zip(cols.messages, cols.streams, cols.offsets, strict=True)
    )
    expected_flags = {0: ("malformed",)}
    assert expected_flags == cols.flags
    assert before <= cols.times[0] <= after
