"""What the tailer asks of a line parser (CRI, Docker JSON, plain, and the multiline
stage that wraps one of them): one protocol, so the multiline stage is a parser to the
tailer and takes any parser as its inner one."""

from __future__ import annotations

from typing import Protocol

from kubelogs.codecs.columns import Columns


class LineParser(Protocol):
    """Turns the lines of one read into rows appended to `Columns`; may hold back a
    partial line (or group) across reads, per stream."""

    @property
    def pending_offset(self) -> int | None: ...

    @property
    def open_streams(self) -> set[str]: ...

    def continue_streams(self, streams: set[str]) -> None: ...

    def reset(self) -> None: ...

    def flush(self, cols: Columns) -> None: ...

    def feed(
        self, lines: list[bytes], offset: int, cols: Columns, truncated: bool = False
    ) -> int: ...
