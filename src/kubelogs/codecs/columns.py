"""The per-line columns a line parser appends to (one read of one file)."""

from __future__ import annotations

import time
from typing import Any

from kubelogs.codecs.timestamps import format_timestamp


class Columns:
    __slots__ = ("fields", "flags", "messages", "offsets", "streams", "times", "tstrs")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.tstrs: list[bytes] = []
        """The same times as RFC 3339 ASCII bytes (``...nnnnnnnnnZ``), kept from the
        runtime's own text when it is already in that form, so documents need no
        formatting (and the hot path no decoding)."""
        self.messages: list[str] = []
        self.streams: list[str] = []
        self.offsets: list[int] = []
        self.flags: dict[int, tuple[str, ...]] = {}
        self.fields: dict[int, dict[str, Any]] = {}

    def add(
        self, ts: int, tstr: bytes, message: str, stream: str, offset: int, *, truncated: bool
    ) -> None:
        """One row assembled outside the parsers' fast path (a joined partial line)."""
        if truncated:
            self.flag(len(self.messages), "truncated")
        self.times.append(ts)
        self.tstrs.append(tstr)
        self.messages.append(message)
        self.streams.append(stream)
        self.offsets.append(offset)

    def add_malformed(self, line: bytes, offset: int, max_size: int, *, truncated: bool) -> None:
        """A line that is not valid in the file's format: kept whole (up to `max_size`)
        as the message, flagged ``malformed``, timed when it was read."""
        row = len(self.messages)
        if len(line) > max_size:
            line = line[:max_size]
            truncated = True
        now = time.time_ns()
        self.add(
            now,
            format_timestamp(now).encode(),
            line.decode("utf-8", "replace"),
            "",
            offset,
            truncated=truncated,
        )
        self.flag(row, "malformed")

    def flag(self, row: int, flag: str) -> None:
        old = self.flags.get(row, ())
        if flag not in old:
            self.flags[row] = (*old, flag)

    def __len__(self) -> int:
        return len(self.messages)
