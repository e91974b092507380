"""Docker json-file lines: ``{"log":"<msg>\\n","stream":"stdout","time":"<RFC3339Nano>"}``.

Docker splits messages longer than 16 KiB into several lines whose ``log`` does not end in
a newline; they are joined until one does. Decoding uses a typed msgspec struct (no dict
per line). A line that is not valid JSON of that shape is kept as the message and flagged
``malformed``; invalid UTF-8 inside the JSON is replaced by U+FFFD first.
"""

from __future__ import annotations

import msgspec

from kubelogs.codecs.columns import Columns
from kubelogs.codecs.timestamps import format_timestamp, parse_rfc3339_ns


class _DockerLine(msgspec.Struct):
    log: str
    stream: str = ""
    time: str = ""


_decode = msgspec.json.Decoder(_DockerLine).decode


def _cut(encoded: bytes, max_bytes: int) -> str:
    """The longest prefix of at most `max_bytes` bytes, not splitting a character."""
    return encoded[:max_bytes].decode("utf-8", "ignore")


class DockerJsonParser:
    __slots__ = ("_first_off", "_first_ts", "_parts", "_size", "_stream", "_truncated", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._parts: list[str] = []
        self._size = 0
        self._first_off = -1
        self._first_ts = 0
        self._stream = ""
        self._truncated = False

    @property
    def pending_offset(self) -> int | None:
        return self._first_off if self._first_off >= 0 else None

    def reset(self) -> None:
        self._parts = []
        self._size = 0
        self._first_off = -1
        self._truncated = False

    def feed(self, lines: list[bytes], offset: int, cols: Columns, truncated: bool = False) -> int:
        times, messages, streams, offsets = cols.times, cols.messages, cols.streams, cols.offsets
        max_size = self.max_size
        for line in lines:
            nxt = offset + len(line) + 1
            if truncated:
                # A physical line cut by the tailer is no longer valid JSON.
                self._malformed(line, offset, cols, truncated=True)
                offset = nxt
                continue
            try:
                d = _decode(line)
            except (msgspec.DecodeError, UnicodeDecodeError):
                try:
                    d = _decode(line.decode("utf-8", "replace").encode())
                except (msgspec.DecodeError, UnicodeDecodeError):
                    self._malformed(line, offset, cols)
                    offset = nxt
                    continue
            tsb = d.time.encode()
            ts = parse_rfc3339_ns(tsb) if tsb else None
            if ts is None:
                self._malformed(line, offset, cols)
                offset = nxt
                continue
            msg = d.log
            final = msg.endswith("\n")
            if final:
                msg = msg[:-1]
            if final and self._first_off < 0:
                row = len(messages)
                if len(msg) * 4 > max_size and len(encoded := msg.encode()) > max_size:
                    msg = _cut(encoded, max_size)
                    cols.flag(row, "truncated")
                times.append(ts)
                cols.tstrs.append(
                    tsb if len(tsb) == 30 and tsb[29] == 90 else format_timestamp(ts).encode()
                )
                messages.append(msg)
                streams.append(d.stream)
                offsets.append(offset)
            else:
                if self._first_off < 0:
                    self._first_off = offset
                    self._first_ts = ts
                    self._stream = d.stream
                room = max_size - self._size
                nbytes = len(msg.encode()) if len(msg) * 4 > room else len(msg)
                if nbytes > room:
                    msg = _cut(msg.encode(), room)
                    nbytes = len(msg.encode())
                    self._truncated = True
                if msg:
                    self._parts.append(msg)
                    self._size += nbytes
                if final:
                    self._emit(cols)
            offset = nxt
        return offset

    def _emit(self, cols: Columns) -> None:
        cols.add(
            self._first_ts,
            format_timestamp(self._first_ts).encode(),
            "".join(self._parts),
            self._stream,
            self._first_off,
            truncated=self._truncated,
        )
        self.reset()

    def flush(self, cols: Columns) -> None:
        if self._first_off >= 0:
            self._emit(cols)

    def _malformed(self, line: bytes, offset: int, cols: Columns, truncated: bool = False) -> None:
        self.flush(cols)
        cols.add_malformed(line, offset, self.max_size, truncated=truncated)
