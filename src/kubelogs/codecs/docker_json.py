"""Docker json-file lines: ``{"log":"<msg>\\n","stream":"stdout","time":"<RFC3339Nano>"}``.

Docker splits messages longer than 16 KiB into several lines whose ``log`` does not end in
a newline; they are joined per stream (`partials.py`) until one does. Decoding uses a
typed msgspec struct (no dict per line). A line that is not valid JSON of that shape is
kept as the message and flagged ``malformed``; invalid UTF-8 inside the JSON is replaced
by U+FFFD first.
"""

from __future__ import annotations

import msgspec

from kubelogs.codecs.columns import Columns
from kubelogs.codecs.partials import JoiningParser
from kubelogs.codecs.timestamps import format_timestamp, parse_rfc3339_ns


class _DockerLine(msgspec.Struct):
    log: str
    stream: str = ""
    time: str = ""


_decode = msgspec.json.Decoder(_DockerLine).decode


def _cut_bytes(encoded: bytes, max_bytes: int) -> str:
    """The longest prefix of at most `max_bytes` bytes, not splitting a character."""
    return encoded[:max_bytes].decode("utf-8", "ignore")


def _cut(piece: str, room: int) -> tuple[str, int, bool]:
    if len(piece) * 4 <= room:
        return piece, len(piece.encode()) if not piece.isascii() else len(piece), False
    encoded = piece.encode()
    if len(encoded) <= room:
        return piece, len(encoded), False
    cut = _cut_bytes(encoded, max(0, room))
    return cut, len(cut.encode()), True


def _join(parts: list[str]) -> str:
    return "".join(parts)


class DockerJsonParser(JoiningParser):
    __slots__ = ()

    def __init__(self, max_size: int) -> None:
        super().__init__(max_size, _cut, _join)

    def feed(self, lines: list[bytes], offset: int, cols: Columns, truncated: bool = False) -> int:
        times, messages, streams, offsets = cols.times, cols.messages, cols.streams, cols.offsets
        max_size = self.max_size
        joiner = self._joiner
        slow = joiner.active
        for line in lines:
            nxt = offset + len(line) + 1
            if truncated:
                # A physical line cut by the tailer is no longer valid JSON.
                self._malformed(line, offset, cols, truncated=True)
                slow = joiner.active
                offset = nxt
                continue
            try:
                d = _decode(line)
            except (msgspec.DecodeError, UnicodeDecodeError):
                try:
                    d = _decode(line.decode("utf-8", "replace").encode())
                except (msgspec.DecodeError, UnicodeDecodeError):
                    self._malformed(line, offset, cols)
                    slow = joiner.active
                    offset = nxt
                    continue
            tsb = d.time.encode()
            ts = parse_rfc3339_ns(tsb) if tsb else None
            if ts is None:
                self._malformed(line, offset, cols)
                slow = joiner.active
                offset = nxt
                continue
            msg = d.log
            final = msg.endswith("\n")
            if final:
                msg = msg[:-1]
            if final and not slow:
                row = len(messages)
                if len(msg) * 4 > max_size and len(encoded := msg.encode()) > max_size:
                    msg = _cut_bytes(encoded, max_size)
                    cols.flag(row, "truncated")
                times.append(ts)
                cols.tstrs.append(
                    tsb if len(tsb) == 30 and tsb[29] == 90 else format_timestamp(ts).encode()
                )
                messages.append(msg)
                streams.append(d.stream)
                offsets.append(offset)
            else:
                joiner.part(
                    cols,
                    stream=d.stream,
                    offset=offset,
                    ts=ts,
                    tstr=format_timestamp(ts).encode(),
                    piece=msg,
                    final=final,
                    truncated=False,
                )
                slow = joiner.active
            offset = nxt
        return offset

    def _malformed(self, line: bytes, offset: int, cols: Columns, truncated: bool = False) -> None:
        # A broken line ends the messages open before it: they are emitted as they are.
        self._joiner.flush(cols)
        cols.add_malformed(line, offset, self.max_size, truncated=truncated)
