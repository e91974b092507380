"""The per-line columns a line parser appends to (one read of one file)."""

from __future__ import annotations

from typing import Any


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

    def flag(self, row: int, flag: str) -> None:
        old = self.flags.get(row, ())
        if flag not in old:
            self.flags[row] = (*old, flag)

    def __len__(self) -> int:
        return len(self.messages)
