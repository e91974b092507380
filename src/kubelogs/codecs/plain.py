"""Plain line-oriented files (kubelet, kube-proxy, container runtime logs).

Each non-empty line is one event; its time is the time it was read (klog-style lines
carry no year, and parsing them is the `parse` transform's job). A trailing ``\\r`` is
removed. There is no partial-line state.
"""

from __future__ import annotations

import time

from kubelogs.codecs.columns import Columns
from kubelogs.codecs.timestamps import format_timestamp


class PlainParser:
    __slots__ = ("max_size",)

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size

    pending_offset = None

    @property
    def open_streams(self) -> set[str]:
        return set()

    def continue_streams(self, streams: set[str]) -> None:
        pass

    def reset(self) -> None:
        pass

    def flush(self, cols: Columns) -> None:
        pass

    def feed(self, lines: list[bytes], offset: int, cols: Columns, truncated: bool = False) -> int:
        now = time.time_ns()
        now_str = format_timestamp(now).encode()
        tstrs = cols.tstrs
        times, messages, streams, offsets = cols.times, cols.messages, cols.streams, cols.offsets
        max_size = self.max_size
        for line in lines:
            nxt = offset + len(line) + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if line:
                row = len(messages)
                if truncated or len(line) > max_size:
                    line = line[:max_size]
                    cols.flag(row, "truncated")
                times.append(now)
                tstrs.append(now_str)
                messages.append(line.decode("utf-8", "replace"))
                streams.append("")
                offsets.append(offset)
            offset = nxt
        return offset
