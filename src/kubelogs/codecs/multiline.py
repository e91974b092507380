"""Joining the lines of one message (a stack trace) into one event, per stream.

`MultilineParser` wraps a file's line parser (CRI, Docker, plain): the inner parser
turns physical lines into rows - CRI/Docker partial lines already joined - and this
stage groups consecutive rows **of the same stream** with a `Rule` (multiline_rules.py).
stdout and stderr are never mixed: a stderr line between two lines of a stdout trace is
an event of its own.

What a joined event is: the first line's offset (so its id), time, stream and flags,
the lines' messages joined with ``"\\n"``, and the flag ``multiline`` (only when more
than one line was joined).

Checkpoints stay exact the way `partials.py` keeps them: rows leave in **offset
order**, so everything after the first line of an open group - the group's lines and
the complete rows of other streams read meanwhile - is held back, and `pending_offset`
(the lowest offset not yet emitted) keeps the file's checkpoint at or before the open
group's first line. A restart re-reads from there and rebuilds the same group: rules
depend only on the lines (see multiline_rules.py), and so does the time rule below.

When a group ends:
- a line that does not continue it (on the same stream), or a line that ends it;
- `max_lines` / `max_bytes`: the group is emitted and the next line starts a new one
  (memory per file is bounded by these and by `HOLD_MAX` held rows);
- the time rule, `timeout`: a line whose *runtime* time is more than `timeout` after
  the group's last line starts a new group. The decision is taken from the data, so a
  re-read after a crash splits at the same place; and a group that stops growing is
  emitted by `expire` once the wall clock is past its last line's time plus `timeout`
  (plus `WRITE_DELAY`, the most a line can take from being stamped by the runtime to
  being in the file) - by then any later line must be split from it anyway. For plain
  files the time is the time the line was read, so a re-read may join what a timeout
  split; a crash in that window can lose the continuation lines (their event id is the
  group's, already stored) - documented in the README;
- the file ends (rotation, truncation, deletion): `flush` emits every open group, so
  nothing is joined across files.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from kubelogs.codecs.columns import Columns
from kubelogs.codecs.multiline_rules import FINAL, NO, Rule

HOLD_MAX = 4096
"""Complete rows held behind open groups before the groups are emitted as they are."""

WRITE_DELAY = 0.5
"""Seconds a line can take from the runtime's timestamp to being readable in the file;
added to `timeout` before a quiet group is emitted by the wall clock."""

STALL_LIMIT = 30.0
"""A group that has not grown for `timeout` plus this many seconds is emitted whatever
its lines' times say (a runtime clock far in the future must not hold a file forever)."""

Row = tuple[int, int, bytes, str, str, tuple[str, ...], int]
"""(offset, time ns, time as RFC 3339 bytes, message, stream, flags, offset of the last
line)."""


def _clocks() -> tuple[int, float]:
    return time.time_ns(), time.monotonic()


class InnerParser(Protocol):
    """The line parser behind this stage (tailing/files.py `LineParser`)."""

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


@dataclass(frozen=True, slots=True)
class MultilineSpec:
    """A compiled multiline setting: what `MultilineParser` needs."""

    rule: Rule
    max_lines: int = 500
    max_bytes: int = 1024 * 1024
    timeout: float = 1.0
    name: str = ""
    """How the setting was given (``java``, ``custom``), for logs and comparisons."""
    clock: Callable[[], tuple[int, float]] = field(default=_clocks, compare=False)
    """(wall clock ns, monotonic s): a seam for tests that drive time."""


class _Group:
    __slots__ = (
        "flags",
        "last",
        "last_ts",
        "lines",
        "n0",
        "off",
        "size",
        "state",
        "stream",
        "touched",
        "ts",
        "tstr",
    )

    def __init__(self, row: Row, state: int, size: int, now: float, n0: int) -> None:
        self.n0 = n0
        """Rows of the file taken before this group opened (for `HOLD_MAX`)."""
        self.off, self.ts, self.tstr, msg, self.stream, self.flags, self.last = row
        self.lines = [msg]
        self.size = size
        self.state = state
        self.last_ts = self.ts
        self.touched = now


def _size(msg: str) -> int:
    return len(msg) + 1 if msg.isascii() else len(msg.encode("utf-8", "replace")) + 1


class MultilineParser:
    """A `LineParser` (tailing/files.py) that joins the rows of `inner` into groups."""

    __slots__ = ("_held", "_n", "_open", "_spec", "inner")

    def __init__(self, inner: InnerParser, spec: MultilineSpec) -> None:
        self.inner = inner
        self._spec = spec
        self._open: dict[str, _Group] = {}
        self._held: list[Row] = []
        self._n = 0
        """Rows taken so far: a group more than `HOLD_MAX` rows old takes no more lines,
        a rule that depends on the data only (restarts rebuild the same groups)."""

    @property
    def spec(self) -> MultilineSpec:
        return self._spec

    # -- LineParser -----------------------------------------------------------------

    @property
    def pending_offset(self) -> int | None:
        low = self.inner.pending_offset
        firsts = [g.off for g in self._open.values()]
        if self._held:
            firsts.append(self._held[0][0])  # sorted by `_release`
        if firsts:
            mine = min(firsts)
            low = mine if low is None else min(low, mine)
        return low

    @property
    def open_streams(self) -> set[str]:
        return self.inner.open_streams

    def continue_streams(self, streams: set[str]) -> None:
        self.inner.continue_streams(streams)

    def reset(self) -> None:
        self.inner.reset()
        self._open.clear()
        self._held.clear()
        self._n = 0

    def feed(self, lines: list[bytes], offset: int, cols: Columns, truncated: bool = False) -> int:
        rows = Columns()
        end = self.inner.feed(lines, offset, rows, truncated)
        if rows.messages:
            self._take(rows, cols)
        return end

    def flush(self, cols: Columns) -> None:
        """The file ended for good: inner leftovers, then every open group, emitted."""
        rows = Columns()
        self.inner.flush(rows)
        if rows.messages:
            self._take(rows, cols)
        self.close_groups(cols)

    # -- groups ---------------------------------------------------------------------

    @property
    def has_open_groups(self) -> bool:
        return bool(self._open)

    def close_groups(self, cols: Columns) -> None:
        """Emit every open group as it is (and what was held behind them)."""
        for g in list(self._open.values()):
            self._close(g)
        self._open.clear()
        self._release(cols)

    def expire(self, cols: Columns, now_ns: int | None = None, mono: float | None = None) -> bool:
        """Emit the groups that stopped growing (see the module docstring); True when
        something was emitted."""
        if not self._open:
            return False
        spec = self._spec
        if now_ns is None or mono is None:
            wall, clock = spec.clock()
            now_ns = wall if now_ns is None else now_ns
            mono = clock if mono is None else mono
        quiet_ns = int((spec.timeout + WRITE_DELAY) * 1e9)
        done = [
            s
            for s, g in self._open.items()
            if (now_ns - g.last_ts > quiet_ns and mono - g.touched >= spec.timeout)
            or mono - g.touched > spec.timeout + STALL_LIMIT
        ]
        if not done:
            return False
        for s in done:
            self._close(self._open.pop(s))
        self._release(cols)
        return True

    def _take(self, rows: Columns, cols: Columns) -> None:
        spec = self._spec
        rule = spec.rule
        max_lines, max_bytes = spec.max_lines, spec.max_bytes
        timeout_ns = int(spec.timeout * 1e9)
        opened = self._open
        flags = rows.flags
        now = spec.clock()[1]
        tstrs = rows.tstrs
        n = self._n
        for i, msg in enumerate(rows.messages):
            n += 1
            stream = rows.streams[i]
            ts = rows.times[i]
            g = opened.get(stream)
            if g is not None:
                size = _size(msg)
                st = NO
                if (
                    ts - g.last_ts <= timeout_ns
                    and len(g.lines) < max_lines
                    and g.size + size <= max_bytes
                    and n - g.n0 <= HOLD_MAX
                ):
                    st = rule.extend(g.state, msg)
                if st != NO:
                    g.lines.append(msg)
                    g.last = rows.offsets[i]
                    g.size += size
                    g.last_ts = ts
                    g.touched = now
                    f = flags.get(i) if flags else None
                    if f:
                        for flag in f:
                            if flag not in g.flags:
                                g.flags = (*g.flags, flag)
                    if st & FINAL:
                        del opened[stream]
                        self._close(g)
                    else:
                        g.state = st
                    continue
                del opened[stream]
                self._close(g)
            off = rows.offsets[i]
            row: Row = (off, ts, tstrs[i], msg, stream, (flags.get(i) or ()) if flags else (), off)
            st = rule.begin(msg)
            if st & FINAL:
                self._held.append(row)
            else:
                opened[stream] = _Group(row, st, _size(msg), now, n)
        self._n = n
        for s in [s for s, g in opened.items() if n - g.n0 >= HOLD_MAX]:
            # Held long enough behind other streams: it could take no more lines anyway.
            self._close(opened.pop(s))
        self._release(cols)

    def _close(self, g: _Group) -> None:
        if len(g.lines) == 1:
            self._held.append((g.off, g.ts, g.tstr, g.lines[0], g.stream, g.flags, g.last))
            return
        flags = g.flags if "multiline" in g.flags else (*g.flags, "multiline")
        self._held.append((g.off, g.ts, g.tstr, "\n".join(g.lines), g.stream, flags, g.last))

    def _release(self, cols: Columns) -> None:
        """Emit, in offset order, the held rows that the checkpoint can pass.

        The checkpoint after this is the lowest first offset of what stays (open groups,
        held rows). Every line before it must be in an emitted row and every line after
        it in a row not emitted - a restart re-reads from there - so a row leaves only
        if its *last* line is before that point: a closed stdout trace whose lines run
        past the start of an open stderr group waits for it.
        """
        held = self._held
        if not held:
            return
        if len(held) > 1:
            held.sort(key=_offset)
        n = len(held)
        if self._open:
            barrier = min(g.off for g in self._open.values())
            n = 0
            last = -1
            for j, row in enumerate(held):
                if row[6] >= barrier:
                    break
                last = max(last, row[6])
                nxt = held[j + 1][0] if j + 1 < len(held) else barrier
                if last < nxt:
                    n = j + 1
        if n == 0:
            return
        out, self._held = held[:n], held[n:]
        for off, ts, tstr, message, stream, flags, _last in out:
            i = len(cols.messages)
            cols.times.append(ts)
            cols.tstrs.append(tstr)
            cols.messages.append(message)
            cols.streams.append(stream)
            cols.offsets.append(off)
            for flag in flags:
                cols.flag(i, flag)


def _offset(row: Row) -> int:
    return row[0]
