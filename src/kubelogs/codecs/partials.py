"""Joining lines that the container runtime split, per stream, in offset order.

CRI runtimes and Docker split a message longer than their buffer (16 KiB) into parts:
CRI ``P`` lines ended by an ``F`` line, Docker ``log`` values without a trailing newline
ended by one with it. The two streams of a container are written by two goroutines, so
a stderr line can sit between the parts of a stdout message: parts are joined **per
stream** (``P(out) F(err) F(out)`` is two events, not ``part1+err`` and ``part2``).

Events leave in **offset order**. A joined event's offset is that of its first part, so
the stderr line above (a higher offset) is held back until the stdout message it
interrupts is complete, then both are emitted in order. Stores that keep a high-water
mark per file (the local store drops events at or below it after a resend) rely on this:
an event with a lower offset emitted after a higher one would be dropped as a resend.
Held lines are bounded (`HOLD_MAX`): past that, the unfinished parts are emitted as
they are, flagged ``partial``, and their later parts become an event of their own,
also flagged ``partial``.

``partial`` also marks the two halves of a line split by a rotation (first parts at the
end of the rotated file, last parts at the start of the new one): they are not joined,
because the halves belong to two files with their own identities and offsets, and a
checkpoint or event id cannot span two files. The tailer tells the new file's parser,
with `continue_streams`, which streams had a line open when the old file ended.

This is the slow path: the parsers' per-line fast path handles complete lines while no
part is pending on any stream (`active` is false), which is nearly always.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubelogs.codecs.columns import Columns

HOLD_MAX = 4096
"""Complete lines held back behind an unfinished message before it is given up on."""

Row = tuple[int, int, bytes, str, str, tuple[str, ...]]
"""(offset, time ns, time as RFC 3339 bytes, message, stream, flags)."""


class _Open:
    __slots__ = ("flags", "off", "parts", "size", "ts", "tstr")

    def __init__(self, off: int, ts: int, tstr: bytes, flags: tuple[str, ...]) -> None:
        self.off = off
        self.ts = ts
        self.tstr = tstr
        self.flags = flags
        self.parts: list[Any] = []
        self.size = 0


class PartialLines:
    """The pending parts of every stream of one file and the lines held behind them.

    `cut(piece, room)` returns the piece cut to at most `room` bytes, its size in bytes
    and whether it was cut; `join(parts)` makes the message text.
    """

    __slots__ = ("_cont", "_cut", "_held", "_join", "_open", "max_size")

    def __init__(
        self,
        max_size: int,
        cut: Callable[[Any, int], tuple[Any, int, bool]],
        join: Callable[[list[Any]], str],
    ) -> None:
        self.max_size = max_size
        self._cut = cut
        self._join = join
        self._open: dict[str, _Open] = {}
        self._held: list[Row] = []
        self._cont: set[str] = set()

    @property
    def active(self) -> bool:
        """Whether a line must go through `part`/`row` rather than the fast path."""
        return bool(self._open or self._cont)

    @property
    def pending_offset(self) -> int | None:
        """The lowest offset not yet emitted (a checkpoint must stay at or before it)."""
        if not self._open:
            return None  # nothing is held while no message is open
        low = min(p.off for p in self._open.values())
        return min(low, min(r[0] for r in self._held)) if self._held else low

    @property
    def open_streams(self) -> set[str]:
        return set(self._open)

    def continue_streams(self, streams: set[str]) -> None:
        """The first part seen on each of `streams` ends a line begun in another file."""
        self._cont |= streams

    def reset(self) -> None:
        self._open.clear()
        self._held.clear()
        self._cont.clear()

    def part(
        self,
        cols: Columns,
        *,
        stream: str,
        offset: int,
        ts: int,
        tstr: bytes,
        piece: Any,
        final: bool,
        truncated: bool,
    ) -> None:
        """One physical line's part of a message on `stream` (`final`: it ends it)."""
        p = self._open.get(stream)
        if p is None:
            flags: tuple[str, ...] = ()
            if stream in self._cont:
                self._cont.discard(stream)
                flags = ("partial",)
            p = _Open(offset, ts, tstr, flags)
            if not final:
                self._open[stream] = p
        piece, nbytes, was_cut = self._cut(piece, self.max_size - p.size)
        if truncated or was_cut:
            p.flags = _with(p.flags, "truncated")
        if nbytes:
            p.parts.append(piece)
            p.size += nbytes
        if final:
            self._open.pop(stream, None)
            self._done(cols, (p.off, p.ts, p.tstr, self._join(p.parts), stream, p.flags))

    def row(self, cols: Columns, row: Row) -> None:
        """A complete line (e.g. a malformed one) in offset order with the others."""
        self._done(cols, row)

    def flush(self, cols: Columns) -> None:
        """The file ended for good: emit unfinished messages as they are (``partial``)."""
        for stream, p in sorted(self._open.items(), key=lambda sp: sp[1].off):
            self._held.append(
                (p.off, p.ts, p.tstr, self._join(p.parts), stream, _with(p.flags, "partial"))
            )
        self._open.clear()
        self._emit_held(cols)

    def _done(self, cols: Columns, row: Row) -> None:
        if self._open:
            self._held.append(row)
            if len(self._held) >= HOLD_MAX:
                self._cont |= set(self._open)
                self.flush(cols)
            return
        if self._held:
            self._held.append(row)
            self._emit_held(cols)
            return
        _add(cols, row)

    def _emit_held(self, cols: Columns) -> None:
        held = self._held
        held.sort(key=lambda r: r[0])
        for row in held:
            _add(cols, row)
        held.clear()


def _with(flags: tuple[str, ...], flag: str) -> tuple[str, ...]:
    return flags if flag in flags else (*flags, flag)


def _add(cols: Columns, row: Row) -> None:
    off, ts, tstr, message, stream, flags = row
    i = len(cols.messages)
    cols.times.append(ts)
    cols.tstrs.append(tstr)
    cols.messages.append(message)
    cols.streams.append(stream)
    cols.offsets.append(off)
    for flag in flags:
        cols.flag(i, flag)


class JoiningParser:
    """What the tailer asks of a parser whose lines can be split (CRI, Docker): the
    state lives in one `PartialLines`."""

    __slots__ = ("_joiner", "max_size")

    def __init__(
        self,
        max_size: int,
        cut: Callable[[Any, int], tuple[Any, int, bool]],
        join: Callable[[list[Any]], str],
    ) -> None:
        self.max_size = max_size
        self._joiner = PartialLines(max_size, cut, join)

    @property
    def pending_offset(self) -> int | None:
        return self._joiner.pending_offset

    @property
    def open_streams(self) -> set[str]:
        return self._joiner.open_streams

    def continue_streams(self, streams: set[str]) -> None:
        self._joiner.continue_streams(streams)

    def reset(self) -> None:
        self._joiner.reset()

    def flush(self, cols: Columns) -> None:
        """Emit pending parts as they are (the file ended for good without their end)."""
        self._joiner.flush(cols)
