"""CRI log lines (containerd, CRI-O): ``<RFC3339Nano> <stdout|stderr> <P|F>[:tags] <msg>``.

A message longer than the runtime's buffer (16 KiB) is split into ``P`` parts ended by an
``F`` part; they are joined into one event whose time and offset are those of the first
part. The joined message is capped at `max_size` bytes and flagged ``truncated``; the rest
of its parts are consumed and dropped. A line that is not valid CRI is kept whole as the
message and flagged ``malformed`` (the time is then the time it was read).

Pure: bytes in, columns out; the pending partial is the only state, and `pending_offset`
tells the tailer where the checkpoint must stay while it is incomplete.
"""

from __future__ import annotations

from kubelogs.codecs.columns import Columns
from kubelogs.codecs.timestamps import format_timestamp, parse_rfc3339_ns

_STREAMS = {b"stdout": "stdout", b"stderr": "stderr"}


class CriParser:
    __slots__ = (
        "_first_off",
        "_first_ts",
        "_first_tstr",
        "_parts",
        "_size",
        "_stream",
        "_truncated",
        "max_size",
    )

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._parts: list[bytes] = []
        self._size = 0
        self._first_off = -1
        self._first_ts = 0
        self._first_tstr = b""
        self._stream = ""
        self._truncated = False

    @property
    def pending_offset(self) -> int | None:
        return self._first_off if self._parts or self._first_off >= 0 else None

    def reset(self) -> None:
        self._parts = []
        self._size = 0
        self._first_off = -1
        self._truncated = False

    def feed(self, lines: list[bytes], offset: int, cols: Columns, truncated: bool = False) -> int:
        """Parse complete physical lines starting at byte `offset`; return the offset after
        them. `truncated` marks the (single) line as cut by the tailer's line cap."""
        times, messages, streams, offsets = cols.times, cols.messages, cols.streams, cols.offsets
        tstrs = cols.tstrs
        max_size = self.max_size
        for line in lines:
            nxt = offset + len(line) + 1
            parts = line.split(b" ", 3)
            stream = _STREAMS.get(parts[1]) if len(parts) >= 3 else None
            tag = parts[2][:1] if stream is not None else b""
            ts = parse_rfc3339_ns(parts[0]) if tag in (b"F", b"P") else None
            if ts is None:
                self._malformed(line, offset, cols)
                offset = nxt
                continue
            msg = parts[3] if len(parts) == 4 else b""
            if tag == b"F" and not self._parts and self._first_off < 0:
                row = len(messages)
                if len(msg) > max_size:
                    msg = msg[:max_size]
                    cols.flag(row, "truncated")
                elif truncated:
                    cols.flag(row, "truncated")
                times.append(ts)
                tsb = parts[0]
                tstrs.append(
                    tsb if len(tsb) == 30 and tsb[29] == 90 else format_timestamp(ts).encode()
                )
                messages.append(msg.decode("utf-8", "replace"))
                streams.append(stream)  # type: ignore[arg-type]
                offsets.append(offset)
            else:
                if self._first_off < 0:
                    self._first_off = offset
                    self._first_ts = ts
                    self._first_tstr = format_timestamp(ts).encode()
                    self._stream = stream  # type: ignore[assignment]
                room = max_size - self._size
                if len(msg) > room:
                    msg = msg[:room]
                    self._truncated = True
                if truncated:
                    self._truncated = True
                if msg:
                    self._parts.append(msg)
                    self._size += len(msg)
                if tag == b"F":
                    self._emit(cols)
            offset = nxt
        return offset

    def _emit(self, cols: Columns) -> None:
        message = b"".join(self._parts).decode("utf-8", "replace")
        cols.add(
            self._first_ts,
            self._first_tstr,
            message,
            self._stream,
            self._first_off,
            truncated=self._truncated,
        )
        self.reset()

    def flush(self, cols: Columns) -> None:
        """Emit a pending partial as it is (the file ended for good without its F)."""
        if self._first_off >= 0:
            self._emit(cols)

    def _malformed(self, line: bytes, offset: int, cols: Columns) -> None:
        # A broken line ends any partial sequence before it: emit what we have.
        self.flush(cols)
        cols.add_malformed(line, offset, self.max_size, truncated=False)
