"""Segment files and the block format: where the documents actually live.

A store directory holds ``index.sqlite`` and ``segments/NNNNNNNN.seg``. A segment file
is a 16-byte header (``KLSEG\\0\\0\\0``, format version, reserved) followed by records
appended back to back; it is never rewritten, only appended to, truncated back to its
indexed end after a crash, or deleted whole by retention.

A record is the block's token filter (`store.bloom`) immediately followed by the block's
zstd frame. Only the SQLite index knows where records are (offset, lengths, CRC-32 of
both parts): bytes that no index row covers are garbage from a write the crash
interrupted, and a record whose checksum does not match is never served.

A block, before compression, is columnar so that most queries never parse JSON::

    "KLB1" u32 n_runs u32 n_docs
    n_runs x (u32 label_set_id, u32 doc_count)     runs: consecutive docs sharing labels
    n_docs x i64 time_ns
    n_docs x u32 doc_length
    the documents, concatenated (JSON, no separators)

Runs let a query on namespace/pod/container/stream decide per run without decoding, and
the time column answers time ranges exactly.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from array import array
from dataclasses import dataclass
from itertools import accumulate, chain

import zstandard

SEGMENT_MAGIC = b"KLSEG\x00\x00\x00"
SEGMENT_FORMAT = 1
SEGMENT_HEADER = struct.Struct("<8sII")
SEGMENT_HEADER_SIZE = SEGMENT_HEADER.size  # 16

_BLOCK_MAGIC = b"KLB1"
_BLOCK_HEADER = struct.Struct("<4sII")
_RUN = struct.Struct("<II")
_LITTLE = sys.byteorder == "little"


def segment_name(segment_id: int) -> str:
    return f"{segment_id:08d}.seg"


def segment_header() -> bytes:
    return SEGMENT_HEADER.pack(SEGMENT_MAGIC, SEGMENT_FORMAT, 0)


class BlockCorrupt(Exception):
    """A record's bytes do not match the index (damaged disk, or cut by hand)."""


@dataclass(slots=True)
class Run:
    label_set: int
    times: list[int]
    docs: list[bytes]


def encode_block(runs: list[Run]) -> bytes:
    """Serialise runs into the uncompressed block layout (one copy of the documents)."""
    n_docs = sum(len(r.docs) for r in runs)
    head = [_BLOCK_HEADER.pack(_BLOCK_MAGIC, len(runs), n_docs)]
    times = array("q")
    lengths = array("I")
    for r in runs:
        head.append(_RUN.pack(r.label_set, len(r.docs)))
        times.extend(r.times)
        lengths.extend(map(len, r.docs))
    if not _LITTLE:
        times.byteswap()
        lengths.byteswap()
    head.append(times.tobytes())
    head.append(lengths.tobytes())
    return b"".join(chain(head, *(r.docs for r in runs)))


@dataclass(slots=True)
class DecodedBlock:
    """A block's columns; documents are sliced from `data` on demand."""

    runs: list[tuple[int, int, int]]
    """(label_set_id, first_doc, end_doc) per run."""
    times: array[int]
    starts: list[int]
    """Byte offset in `data` of each document, plus the end (len = n_docs + 1)."""
    data: bytes

    def doc(self, i: int) -> bytes:
        return self.data[self.starts[i] : self.starts[i + 1]]


def decode_block(raw: bytes) -> DecodedBlock:
    try:
        magic, n_runs, n_docs = _BLOCK_HEADER.unpack_from(raw, 0)
    except struct.error as exc:
        raise BlockCorrupt("block header is cut short") from exc
    if magic != _BLOCK_MAGIC:
        raise BlockCorrupt("block header has the wrong magic")
    pos = _BLOCK_HEADER.size
    runs: list[tuple[int, int, int]] = []
    first = 0
    for _ in range(n_runs):
        label_set, count = _RUN.unpack_from(raw, pos)
        pos += _RUN.size
        runs.append((label_set, first, first + count))
        first += count
    if first != n_docs:
        raise BlockCorrupt("block runs do not add up to its document count")
    times = array("q")
    times.frombytes(raw[pos : pos + 8 * n_docs])
    pos += 8 * n_docs
    lengths = array("I")
    lengths.frombytes(raw[pos : pos + 4 * n_docs])
    pos += 4 * n_docs
    if not _LITTLE:
        times.byteswap()
        lengths.byteswap()
    starts = list(accumulate(lengths, initial=pos))
    if len(times) != n_docs or starts[-1] != len(raw):
        raise BlockCorrupt("block columns do not match its length")
    return DecodedBlock(runs, times, starts, raw)


class BlockCodec:
    """zstd compressor/decompressor pair, reused across blocks (they keep state)."""

    def __init__(self, level: int = 1) -> None:
        self._c = zstandard.ZstdCompressor(level=level)
        self._d = zstandard.ZstdDecompressor()

    def compress(self, raw: bytes) -> bytes:
        return bytes(self._c.compress(raw))

    def decompress(self, frame: bytes) -> bytes:
        try:
            return bytes(self._d.decompress(frame))
        except zstandard.ZstdError as exc:
            raise BlockCorrupt(f"block does not decompress: {exc}") from exc


def checksum(data: bytes) -> int:
    return zlib.crc32(data)


def read_exact(fd: int, offset: int, length: int) -> bytes:
    """`length` bytes at `offset`, or BlockCorrupt if the file is shorter."""
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise BlockCorrupt(f"file ends {length - len(data)} bytes before the block does")
    return data
