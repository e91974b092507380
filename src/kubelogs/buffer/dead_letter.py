"""The dead-letter queue: events a sink's destination rejected for good, with the reason.

Why: a document Elasticsearch refuses (a mapping conflict, a parse error) can never be
delivered as it is; holding it back would stop the stream, dropping it silently would
lose it. It is written here, durably, and only then acknowledged upstream (DESIGN.md
section 2); ``kubelogs dlq list|show|replay`` shows what was rejected and why and sends
it again once the mapping is fixed.

On disk: one directory per sink (``<data_dir>/dead_letter/<sink id>`` by default), one
NDJSON file per group of rejections (``<unix ns>-<pid>-<seq>.ndjson``), written to a
``.tmp`` name, fsynced and renamed, so a file is complete or absent and is never
appended to afterwards. That keeps the writer (a running agent) and `replay` (another
process) apart without locks: replay reads whole files, and replaces a file by the
entries that failed again (or removes it) with a rename, never touching files written
since it started. Each line is an `Entry`; ``document`` is the original JSON document,
byte for byte.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from kubelogs.codecs.timestamps import format_timestamp

SUFFIX = ".ndjson"
_seq = itertools.count()


class Entry(msgspec.Struct, omit_defaults=True):
    """One rejected event."""

    time: str
    """When it was rejected (RFC 3339, wall clock)."""
    sink: str
    id: str
    """The event's deterministic id (its ``_id`` in Elasticsearch)."""
    target: str
    """Where it was going (the index or data stream)."""
    status: int
    error_type: str
    reason: str
    document: msgspec.Raw
    """The original document, byte for byte."""
    attempts: int = 1
    """Times it was rejected (replays that failed again add one)."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Entry)


def now_rfc3339() -> str:
    return format_timestamp(time.time_ns())


def write_entries(directory: Path, entries: Sequence[Entry], *, prefix: str = "") -> Path:
    """Write `entries` as one new complete file (fsynced, renamed into place)."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{prefix}{time.time_ns()}-{os.getpid()}-{next(_seq)}"
    tmp = directory / (name + ".tmp")
    final = directory / (name + SUFFIX)
    data = b"".join(_encoder.encode(e) + b"\n" for e in entries)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, final)
    _fsync_dir(directory)
    return final


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def files(directory: Path) -> list[Path]:
    """Complete dead-letter files of one sink, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX))


def read_file(path: Path) -> list[Entry]:
    """The entries of one file; a line that cannot be decoded is skipped (a file is
    written whole, so this only happens to a file edited by hand)."""
    out: list[Entry] = []
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            out.append(_decoder.decode(line))
        except msgspec.DecodeError:
            continue
    return out


def iter_entries(directory: Path) -> Iterator[tuple[Path, Entry]]:
    for path in files(directory):
        for e in read_file(path):
            yield path, e


def replace_file(path: Path, remaining: Sequence[Entry]) -> None:
    """After a replay: `path` holds only `remaining` (removed when nothing is left)."""
    if remaining:
        write_entries(path.parent, remaining, prefix="r")
    path.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def sink_dirs(root: Path) -> dict[str, Path]:
    """Sink id -> its dead-letter directory, under the default root."""
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if p.is_dir()}


def entry_as_dict(e: Entry) -> dict[str, Any]:
    """For ``--output json``: the entry with its document decoded."""
    d: dict[str, Any] = msgspec.json.decode(_encoder.encode(e))
    return d
