"""One followed file: its descriptor, identity, read position and parser state."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Hashable

from kubelogs.codecs.cri import CriParser
from kubelogs.codecs.docker_json import DockerJsonParser
from kubelogs.codecs.line_parser import LineParser as LineParser
from kubelogs.codecs.plain import PlainParser
from kubelogs.pipeline.acks import AckLedger
from kubelogs.pipeline.event import Batch, FileContext
from kubelogs.tailing.discovery import ContextFactory

TAIL_BYTES = 16
"""Bytes before the read position compared on every read: a file truncated and regrown
past that position between two reads no longer has them there."""


def make_parser(fmt: str, first: bytes, max_size: int) -> LineParser:
    if fmt == "plain":
        return PlainParser(max_size)
    if first[:1] == b"{":
        return DockerJsonParser(max_size)
    return CriParser(max_size)


class TailedFile:
    """One open file and everything needed to resume it exactly.

    `key` is the logical identity (checkpoints.py): it stays when a copytruncate copy
    takes over the file's unread bytes, while `fd`, `dev`, `ino` and `disk_path` then
    name the copy.
    """

    __slots__ = (
        "after",
        "carry",
        "ctx",
        "deleted",
        "dev",
        "discarding",
        "disk_path",
        "ended_open",
        "eof",
        "factory",
        "fd",
        "fmt",
        "fp",
        "fp_len",
        "head",
        "head_off",
        "ino",
        "key",
        "last_growth",
        "ledger",
        "link",
        "parse",
        "parser",
        "path",
        "pos",
        "rotated",
        "saved",
        "seen",
        "seen_tail",
        "size",
        "stages_key",
        "tail",
    )

    def __init__(
        self,
        link: str,
        path: str,
        fd: int,
        st: os.stat_result,
        fp: str,
        fp_len: int,
        factory: ContextFactory,
        fmt: str,
    ) -> None:
        self.link = link
        self.path = path
        """The path reported in documents: the name the file had when it was opened."""
        self.disk_path = path
        """Where the file is now (after rotation renames it): checkpoints record this."""
        self.fd = fd
        self.dev = st.st_dev
        self.ino = st.st_ino
        self.fp = fp
        self.fp_len = fp_len
        self.key = ""
        self.size = st.st_size
        self.seen = st.st_size
        """A size the file had, and the bytes before it (`seen_tail`): checked on every
        scan, so a truncation is noticed even before anything was read."""
        self.seen_tail = os.pread(
            fd, min(TAIL_BYTES, self.seen), self.seen - min(TAIL_BYTES, self.seen)
        )
        self.pos = 0
        self.tail = b""
        self.carry = b""
        self.discarding = False
        self.head = b""
        self.head_off = 0
        self.rotated = False
        self.deleted = False
        self.eof = False
        self.ended_open: set[str] = set()
        """Streams with a line still open when the file ended (split by a rotation)."""
        self.after: TailedFile | None = None
        """The file this one replaced under the same name, read to its end first."""
        self.last_growth = time.monotonic()
        self.ledger = AckLedger(0)
        self.saved = -1
        self.parser: LineParser = PlainParser(1)
        self.parse: Callable[[Batch], Batch] | None = None
        """The parser chosen for this file (tailing/stages.py), run on each batch."""
        self.stages_key: Hashable = None
        self.ctx: FileContext | None = None
        self.factory = factory
        self.fmt = fmt

    @property
    def inode(self) -> tuple[int, int]:
        return (self.dev, self.ino)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
