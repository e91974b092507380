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
- `max_lines` / `max_bytes`: the group is emitted and the next line starts a new one;
  a group that `HOLD_MAX` rows (of any stream) have passed takes no more lines - memory
  per file is bounded by these;
- the time rule, `timeout`: a line whose *runtime* time is more than `timeout` after
  the group's last line starts a new group, and a line of another stream more than
  `timeout` + `WRITE_DELAY` after it closes it. The decisions are taken from the data,
  so a re-read after a crash splits at the same places; and a group that stops growing
  is emitted by `expire` once the wall clock is past its last line's time plus `timeout`
  plus `WRITE_DELAY` (the most a line can take from being stamped by the runtime to
  being in the file) - by then any later line must be split from it anyway. For plain
  files the time is the time the line was read, so a re-read may join what a timeout
  split; a crash in that window can lose the continuation lines (their event id is the
  group's, already stored) - documented in the README;
- the file ends (rotation, truncation, deletion): `flush` emits every open group, so
  nothing is joined across files.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import compress, groupby, repeat
from typing import Any

from kubelogs.codecs.columns import Columns
from kubelogs.codecs.line_parser import LineParser
from kubelogs.codecs.multiline_rules import FINAL, Rule

_NEVER = 1 << 80

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


# An open group is a list, not an object: one is made for nearly every line (most lines
# are single-line events whose group closes at the next line), and a list literal is
# several times cheaper to make than a slotted instance.
_OFF, _TS, _TSTR, _FIRST, _STREAM, _FLAGS, _LAST, _STATE, _N0, _SIZE, _LAST_TS = range(11)
_TOUCHED, _MORE = 11, 12
"""Group fields: first line's offset, time, time text, message and stream; flags; the
last line's offset; the rule's state; rows taken before it opened (for `HOLD_MAX`); its
size in bytes (-1: not counted yet); the last line's time; when it last grew
(monotonic); the lines after the first (None while there is one)."""

Group = list[Any]


def _size(msg: str) -> int:
    return len(msg) + 1 if msg.isascii() else len(msg.encode("utf-8", "replace")) + 1


class MultilineParser:
    """A `LineParser` that joins the rows of `inner` into groups."""

    __slots__ = ("_deadline", "_held", "_n", "_open", "_spans", "_spec", "inner")

    def __init__(self, inner: LineParser, spec: MultilineSpec) -> None:
        self.inner = inner
        self._spec = spec
        self._open: dict[str, Group] = {}
        self._held: list[Row] = []
        self._spans: list[tuple[int, int]] = []
        """(first, last offset) of the held rows that join several lines."""
        self._deadline = _NEVER
        """No open group can be quiet for long before a row with this time (ns) comes."""
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
        firsts = [g[_OFF] for g in self._open.values()]
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
        self._spans.clear()
        self._n = 0
        self._deadline = _NEVER

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
            self._close(g, None)
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
            if (now_ns - g[_LAST_TS] > quiet_ns and mono - g[_TOUCHED] >= spec.timeout)
            or mono - g[_TOUCHED] > spec.timeout + STALL_LIMIT
        ]
        if not done:
            return False
        for s in done:
            self._close(self._open.pop(s), None)
        self._release(cols)
        return True

    def _take(self, rows: Columns, cols: Columns) -> None:
        """Group `rows` (one read's rows, in offset order) and emit what may leave.

        Rows that the rule's `prefilter` does not match cannot continue a group in the
        rule's `plain` state, and start one in that state: a run of them on one stream
        is a run of one-line events but its last row, handled in bulk (`_take_run`).
        The other rows go through `rule.step` one by one (`_take_rows`). Both give the
        same groups; the bulk path only saves Python work per line.
        """
        rule = self._spec.rule
        pre = rule.prefilter
        messages = rows.messages
        count = len(messages)
        if pre is None:
            self._take_rows(rows, cols, 0, count)
        else:
            cands = list(compress(range(count), map(pre.match, messages)))
            ci = 0
            a = 0
            nc = len(cands)
            for stream, run in groupby(rows.streams):
                b = a + len(list(run))
                while ci < nc and cands[ci] < b:
                    c = e = cands[ci]
                    while ci < nc and cands[ci] == e and e < b:  # consecutive candidates
                        e += 1
                        ci += 1
                    self._take_run(rows, cols, a, c, stream)
                    self._take_rows(rows, cols, c, e)
                    a = e
                self._take_run(rows, cols, a, b, stream)
                a = b
        opened = self._open
        n = self._n
        for s in [s for s, g in opened.items() if n - g[_N0] >= HOLD_MAX]:
            # Held long enough behind other streams: it could take no more lines anyway.
            self._close(opened.pop(s), None)
        if self._held:
            self._release(cols)

    def _take_run(self, rows: Columns, cols: Columns, a: int, b: int, stream: str) -> None:
        """Rows a..b-1: all of `stream`, none matched by the prefilter."""
        opened = self._open
        plain = self._spec.rule.plain
        while a < b:
            g = opened.get(stream)
            if g is None or g[_STATE] == plain:
                break
            self._take_rows(rows, cols, a, a + 1)  # e.g. a traceback's frames
            a += 1
        if a >= b:
            return
        times = rows.times
        quiet_ns = int((self._spec.timeout + WRITE_DELAY) * 1e9)
        if max(times[a:b]) > self._deadline:
            # The deadline may be stale (its group has closed): recompute it first.
            self._deadline = (
                min(g[_LAST_TS] for g in opened.values()) + quiet_ns if opened else _NEVER
            )
            if max(times[a:b]) > self._deadline:
                self._take_rows(rows, cols, a, b)  # the time rule may close a group here
                return
        g = opened.pop(stream, None)
        if g is not None:
            self._close(g, cols)
        last = b - 1
        offsets, tstrs, messages, flags = rows.offsets, rows.tstrs, rows.messages, rows.flags
        if last > a:
            if not opened and not self._held:
                base = len(cols.messages)
                cols.offsets.extend(offsets[a:last])
                cols.times.extend(times[a:last])
                cols.tstrs.extend(tstrs[a:last])
                cols.messages.extend(messages[a:last])
                cols.streams.extend(repeat(stream, last - a))
                for k, fl in flags.items():
                    if a <= k < last:
                        for flag in fl:
                            cols.flag(base + k - a, flag)
            else:
                fls: Iterable[tuple[str, ...]] = (
                    [flags.get(k, ()) for k in range(a, last)] if flags else repeat(())
                )
                self._held.extend(
                    zip(
                        offsets[a:last],
                        times[a:last],
                        tstrs[a:last],
                        messages[a:last],
                        repeat(stream),
                        fls,
                        offsets[a:last],
                    )
                )
        n = self._n + (b - a)
        self._n = n
        ts = times[last]
        opened[stream] = [
            offsets[last],
            ts,
            tstrs[last],
            messages[last],
            stream,
            flags.get(last, ()),
            offsets[last],
            plain,
            n,
            -1,
            ts,
            self._spec.clock()[1],
            None,
        ]
        if ts + quiet_ns < self._deadline:
            self._deadline = ts + quiet_ns

    def _take_rows(self, rows: Columns, cols: Columns, a: int, b: int) -> None:
        """Rows a..b-1, one by one through the rule."""
        spec = self._spec
        step, begin = spec.rule.step, spec.rule.begin
        max_lines, max_bytes = spec.max_lines, spec.max_bytes
        timeout_ns = int(spec.timeout * 1e9)
        quiet_ns = timeout_ns + int(WRITE_DELAY * 1e9)
        deadline = self._deadline
        opened = self._open
        held = self._held
        flags = rows.flags
        now = spec.clock()[1]
        tstrs, offsets, streams, times = rows.tstrs, rows.offsets, rows.streams, rows.times
        n = self._n
        messages = rows.messages
        for i in range(a, b):
            msg = messages[i]
            n += 1
            stream = streams[i]
            ts = times[i]
            if ts > deadline:
                deadline = self._close_quiet(ts - quiet_ns)
            g = opened.get(stream)
            if g is None:
                st = begin(msg)
            else:
                st = step(g[_STATE], msg)
                if st >= 0:
                    more = g[_MORE]
                    size = g[_SIZE]
                    if size < 0:
                        size = _size(g[_FIRST])
                    size += _size(msg)
                    if (
                        ts - g[_LAST_TS] <= timeout_ns
                        and (2 if more is None else len(more) + 2) <= max_lines
                        and size <= max_bytes
                        and n - g[_N0] <= HOLD_MAX
                    ):
                        if more is None:
                            g[_MORE] = [msg]
                        else:
                            more.append(msg)
                        g[_LAST] = offsets[i]
                        g[_SIZE] = size
                        g[_LAST_TS] = ts
                        g[_TOUCHED] = now
                        if flags and i in flags:
                            g[_FLAGS] = _merge(g[_FLAGS], flags[i])
                        if st & FINAL:
                            del opened[stream]
                            self._close(g, cols)
                        else:
                            g[_STATE] = st
                        continue
                    st = begin(msg)  # a limit ends the group: the line starts the next
                else:
                    st = -1 - st
                # This row starts a new group: the open one is complete.
                del opened[stream]
                self._close(g, cols)
            off = offsets[i]
            row_flags = flags.get(i, ()) if flags else ()
            if st & FINAL:
                row = (off, ts, tstrs[i], msg, stream, row_flags, off)
                if opened or held:
                    held.append(row)
                else:
                    _emit(cols, row)
            else:
                opened[stream] = [
                    off,
                    ts,
                    tstrs[i],
                    msg,
                    stream,
                    row_flags,
                    off,
                    st,
                    n,
                    -1,
                    ts,
                    now,
                    None,
                ]
                if ts + quiet_ns < deadline:
                    deadline = ts + quiet_ns
        self._n = n
        self._deadline = deadline

    def _close_quiet(self, limit: int) -> int:
        """Close the groups whose last line is older than `limit` (ns, the runtime's
        clock): a row that much later, of any stream, shows that no line can join them
        any more (the time rule, decided from the data). Returns the next deadline."""
        deadline = _NEVER
        quiet = limit  # a group is quiet when its last line's time is before this
        for s, g in list(self._open.items()):
            if g[_LAST_TS] < quiet:
                del self._open[s]
                self._close(g, None)
        if self._open:
            gap = self._spec.timeout + WRITE_DELAY
            deadline = min(g[_LAST_TS] for g in self._open.values()) + int(gap * 1e9)
        return deadline

    def _close(self, g: Group, cols: Columns | None) -> None:
        """`g` is complete (and no longer in `_open`): straight to `cols` when nothing
        else waits, else held for `_release`."""
        more = g[_MORE]
        if more is None:
            row = (g[_OFF], g[_TS], g[_TSTR], g[_FIRST], g[_STREAM], g[_FLAGS], g[_LAST])
        else:
            fl = g[_FLAGS]
            fl = fl if "multiline" in fl else (*fl, "multiline")
            text = g[_FIRST] + "\n" + "\n".join(more)
            row = (g[_OFF], g[_TS], g[_TSTR], text, g[_STREAM], fl, g[_LAST])
        if cols is not None and not self._held and not self._open:
            _emit(cols, row)
        else:
            self._held.append(row)
            if more is not None:
                self._spans.append((row[0], row[6]))

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
            held.sort()  # by offset: offsets are unique, so later fields never compare
        k = len(held)
        barrier = _NEVER
        if self._open:
            barrier = min(g[_OFF] for g in self._open.values())
            k = bisect_left(held, (barrier,))  # the rows that start before it
        spans = self._spans
        if spans:
            # One-line rows end where they start; only joined rows can reach past the
            # next row or the barrier. Cut before the first that does, until none does.
            spans.sort()
            cut = True
            while cut and k > 0:
                cut = False
                bound = min(barrier, held[k][0]) if k < len(held) else barrier
                for first, last in spans:
                    if first >= bound:
                        break
                    if last >= bound:
                        k = bisect_left(held, (first,))
                        cut = True
                        break
        if k == 0:
            return
        out, self._held = held[:k], held[k:]
        if spans:
            left = self._held[0][0] if self._held else _NEVER
            self._spans = [sp for sp in spans if sp[0] >= left]
        _emit_many(cols, out)


def _emit(cols: Columns, row: Row) -> None:
    off, ts, tstr, message, stream, flags, _last = row
    if flags:
        for flag in flags:
            cols.flag(len(cols.messages), flag)
    cols.times.append(ts)
    cols.tstrs.append(tstr)
    cols.messages.append(message)
    cols.streams.append(stream)
    cols.offsets.append(off)


def _emit_many(cols: Columns, rows: list[Row]) -> None:
    """`_emit` for many rows: the columns transposed and extended at C speed."""
    if len(rows) < 8:
        for row in rows:
            _emit(cols, row)
        return
    base = len(cols.messages)
    offs, times, tstrs, messages, streams, flags, _lasts = zip(*rows, strict=False)
    cols.offsets.extend(offs)
    cols.times.extend(times)
    cols.tstrs.extend(tstrs)
    cols.messages.extend(messages)
    cols.streams.extend(streams)
    for j in compress(range(len(flags)), flags):  # only the few rows with flags
        for flag in flags[j]:
            cols.flag(base + j, flag)


def _merge(flags: tuple[str, ...], more: tuple[str, ...]) -> tuple[str, ...]:
    for flag in more:
        if flag not in flags:
            flags = (*flags, flag)
    return flags
