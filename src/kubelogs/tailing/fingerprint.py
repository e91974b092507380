"""What a file's content says about its identity: the head fingerprint and the anchor.

Device and inode alone do not identify a log file: after a file is deleted its inode is
reused by the next file created, and copytruncate keeps the inode while replacing the
content. Two hashes of content are kept beside them:

- the **head fingerprint**: a hash of the first complete line (up to `FINGERPRINT_MAX`
  bytes, so a Docker json-file line, whose timestamp comes *after* a message of up to
  16 KiB, is hashed with its timestamp). A file whose first line is not complete yet and
  shorter than that has no fingerprint: it is not read until it has one (an incomplete
  line is never emitted anyway). Plain files can share a first line (a header), so the
  fingerprint alone never decides that two files are the same;
- the **anchor**: a hash of the `ANCHOR_BYTES` bytes just before a checkpoint's offset.
  A file that still holds the same bytes before the offset is the file the checkpoint
  was written for; one that does not was truncated (and perhaps regrown) or replaced.
  A copytruncate copy holds them too, which is how a copy is recognised as the rest of
  the file it was copied from.
"""

from __future__ import annotations

import hashlib
import os

FINGERPRINT_MAX = 64 * 1024
"""Bytes of the first line hashed at most (a Docker line of 16 KiB escaped fits)."""
ANCHOR_BYTES = 64
"""Bytes before a checkpoint offset that must be unchanged for the checkpoint to apply."""


def _hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def head_fingerprint(fd: int) -> tuple[str, int] | None:
    """(hash of the first line, bytes hashed), or None while there is no complete line."""
    head = os.pread(fd, 4096, 0)
    nl = head.find(b"\n")
    if nl < 0 and len(head) == 4096:
        head = os.pread(fd, FINGERPRINT_MAX, 0)
        nl = head.find(b"\n")
    if nl >= 0:
        head = head[: nl + 1]
    elif len(head) < FINGERPRINT_MAX:
        return None
    return _hash(head), len(head)


def fingerprint(fd: int) -> str | None:
    found = head_fingerprint(fd)
    return found[0] if found is not None else None


def same_head(fd: int, fp: str, nbytes: int) -> bool:
    """Whether the file still starts with the line fingerprinted as `fp` (`nbytes` long):
    one small read, cheap enough for every scan of every open file."""
    if nbytes <= 0:
        return False
    head = os.pread(fd, nbytes, 0)
    return len(head) == nbytes and _hash(head) == fp


def anchor_hash(before: bytes) -> str:
    """The anchor of an offset, from the (up to `ANCHOR_BYTES`) bytes just before it."""
    return _hash(before[-ANCHOR_BYTES:]) if before else ""


def anchor_at(fd: int, offset: int) -> str | None:
    """The anchor of `offset` in the file now, or None if the file is shorter."""
    if offset <= 0:
        return ""
    start = max(0, offset - ANCHOR_BYTES)
    data = os.pread(fd, offset - start, start)
    if len(data) != offset - start:
        return None
    return anchor_hash(data)


def holds(fd: int, fp: str, offset: int, anchor: str) -> bool:
    """Whether the file behind `fd` is the content a checkpoint (`fp`, `offset`,
    `anchor`) was written for: the same first line and the same bytes before `offset`.
    An empty `anchor` (a checkpoint from before anchors were kept) checks the size only."""
    if fingerprint(fd) != fp:
        return False
    if not anchor:
        return os.fstat(fd).st_size >= offset
    return anchor_at(fd, offset) == anchor


def file_key(dev: int, ino: int, fp: str) -> str:
    return f"{dev}:{ino}:{fp}"
