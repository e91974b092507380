"""File identity: device + inode + a fingerprint of the first line.

Device and inode alone are not enough: after a file is deleted its inode is reused by the
next file created, and an agent keyed only by inode then skips the new file's first bytes
(a long-standing bug in several agents). The first line of a container log starts with a
nanosecond timestamp, so hashing it (at most `FINGERPRINT_BYTES`) tells files apart. A file
whose first line is not complete yet and shorter than that has no fingerprint: it is not
read until it has one (an incomplete line is never emitted anyway).
"""

from __future__ import annotations

import hashlib
import os

FINGERPRINT_BYTES = 256


def fingerprint(fd: int) -> str | None:
    head = os.pread(fd, FINGERPRINT_BYTES, 0)
    nl = head.find(b"\n")
    if nl >= 0:
        head = head[: nl + 1]
    elif len(head) < FINGERPRINT_BYTES:
        return None
    return hashlib.blake2b(head, digest_size=8).hexdigest()


def file_key(dev: int, ino: int, fp: str) -> str:
    return f"{dev}:{ino}:{fp}"
