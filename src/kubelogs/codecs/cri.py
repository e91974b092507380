"""CRI log lines (containerd, CRI-O): ``<RFC3339Nano> <stdout|stderr> <P|F>[:tags] <msg>``.

A message longer than the runtime's buffer (16 KiB) is split into ``P`` parts ended by an
``F`` part; they are joined per stream (`partials.py`) into one event whose time and
offset are those of the first part. The joined message is capped at `max_size` bytes and
flagged ``truncated``; the rest of its parts are consumed and dropped. A line that is
not valid CRI is kept whole as the message and flagged ``malformed`` (the time is then
the time it was read).

Pure: bytes in, columns out; pending parts are the only state, and `pending_offset`
tells the tailer where the checkpoint must stay while they are incomplete.
"""

from __future__ import annotations

from kubelogs.codecs.columns import Columns
from kubelogs.codecs.partials import JoiningParser
from kubelogs.codecs.timestamps import format_timestamp, parse_rfc3339_ns

_STREAMS = {b"stdout": "stdout", b"stderr": "stderr"}


def _cut(piece: bytes, room: int) -> tuple[bytes, int, bool]:
    if len(piece) <= room:
        return piece, len(piece), False
    room = max(0, room)
    return piece[:room], room, True


def _join(parts: list[bytes]) -> str:
    return b"".join(parts).decode("utf-8", "replace")


def _tstr(tsb: bytes, ts: int) -> bytes:
    return tsb if len(tsb) == 30 and tsb[29] == 90 else format_timestamp(ts).encode()


class CriParser(JoiningParser):
    __slots__ = ()

    def __init__(self, max_size: int) -> None:
        super().__init__(max_size, _cut, _join)

    def feed(self, lines: list[bytes], offset: int, cols: Columns, truncated: bool = False) -> int:
        """Parse complete physical lines starting at byte `offset`; return the offset after
        them. `truncated` marks the (single) line as cut by the tailer's line cap."""
        times, messages, streams, offsets = cols.times, cols.messages, cols.streams, cols.offsets
        tstrs = cols.tstrs
        max_size = self.max_size
        joiner = self._joiner
        slow = joiner.active
        for line in lines:
            nxt = offset + len(line) + 1
            parts = line.split(b" ", 3)
            stream = _STREAMS.get(parts[1]) if len(parts) >= 3 else None
            tag = parts[2][:1] if stream is not None else b""
            ts = parse_rfc3339_ns(parts[0]) if tag in (b"F", b"P") else None
            if ts is None:
                self._malformed(line, offset, cols)
                slow = joiner.active
                offset = nxt
                continue
            msg = parts[3] if len(parts) == 4 else b""
            if tag == b"F" and not slow:
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
                joiner.part(
                    cols,
                    stream=stream,  # type: ignore[arg-type]
                    offset=offset,
                    ts=ts,
                    tstr=_tstr(parts[0], ts),
                    piece=msg,
                    final=tag == b"F",
                    truncated=truncated,
                )
                slow = joiner.active
            offset = nxt
        return offset

    def _malformed(self, line: bytes, offset: int, cols: Columns) -> None:
        # A broken line ends the messages open before it: they are emitted as they are.
        self._joiner.flush(cols)
        cols.add_malformed(line, offset, self.max_size, truncated=False)
