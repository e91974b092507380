"""Events travel in columnar batches, one batch per source file and read.

Why columnar: per-line Python work is the cost of a log agent (PERFORMANCE.md). Everything
that all lines of one file share - path, pod, container, the Kubernetes metadata - lives
once in a `FileContext`, already encoded as JSON bytes, and is spliced into each document
when a sink encodes it. A batch then only carries the per-line columns: time, message,
stream and byte offset, plus sparse flags and parsed fields.

An *event* is row `i` of a batch: ``(times[i], messages[i], streams[i], offsets[i])``.
Its deterministic id is ``f"{ctx.id_prefix}-{offsets[i]:x}"`` (see `event_id`): the node,
the file's identity and the offset of the line's first byte, stable across restarts, so a
resend after a crash can be recognised by stores that index by id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kubelogs.pipeline.acks import AckToken


def make_id_prefix(node: str, file_key: str) -> str:
    """Hash (node, file identity) into the stable prefix of every event id of that file."""
    return hashlib.blake2b(f"{node}\x00{file_key}".encode(), digest_size=10).hexdigest()


@dataclass(slots=True)
class FileContext:
    """What every line of one source file shares, resolved once per file (not per line).

    `meta_ecs` / `meta_fluentd` are JSON object *members* without the surrounding braces,
    e.g. ``b'"kubernetes":{"namespace":"default",...},"host":{"name":"node-1"}'``; sinks
    splice them into each document. Transforms that change metadata build a new context
    with `with_meta` instead of touching lines.
    """

    source_id: str
    path: str
    """The path reported as `log.file.path` (the real file, not the symlink)."""
    file_key: str
    """Stable identity of the file: ``"<dev>:<inode>:<fingerprint>"``. Used for event ids
    and by stores that remember how far they have stored each file."""
    id_prefix: str
    node: str = ""
    namespace: str = ""
    pod: str = ""
    pod_uid: str = ""
    container: str = ""
    container_id: str = ""
    meta_ecs: bytes = b""
    meta_fluentd: bytes = b""
    extra: dict[str, str] = field(default_factory=dict)
    """Per-pod settings from annotations (`parser`, `multiline`, `index`)."""

    def with_meta(
        self, *, meta_ecs: bytes, meta_fluentd: bytes, extra: dict[str, str] | None = None
    ) -> FileContext:
        return replace(
            self,
            meta_ecs=meta_ecs,
            meta_fluentd=meta_fluentd,
            extra=self.extra if extra is None else extra,
        )


@dataclass(slots=True)
class Batch:
    """Consecutive events of one file; columns are parallel lists of equal length.

    Batches are treated as immutable once sent: a transform that changes something
    returns a new `Batch` (cheap: the column lists are shared), so fan-out never needs
    to copy them.
    """

    ctx: FileContext
    times: list[int]
    """Runtime's time of each line, integer nanoseconds since the epoch (UTC)."""
    messages: list[str]
    streams: list[str]
    """``stdout``/``stderr`` for container logs, ``""`` for plain files."""
    offsets: list[int]
    """Byte offset of the first byte of each event in its file."""
    flags: dict[int, tuple[str, ...]] | None = None
    """Sparse: row -> flags such as ``("truncated",)`` or ``("malformed",)``."""
    fields: dict[int, dict[str, Any]] | None = None
    """Sparse: row -> parsed fields added beside `message`."""
    ack: AckToken | None = None
    end_offset: int = 0
    tstrs: list[bytes] | None = None
    """Optional: `times` as RFC 3339 ASCII bytes with nanoseconds (``...Z``, nothing to
    escape), when the source had them already; encoders format `times` themselves when
    this is None."""
    """Where the source may resume once this batch is acknowledged."""

    def __len__(self) -> int:
        return len(self.messages)

    def event_id(self, row: int) -> str:
        return event_id(self.ctx.id_prefix, self.offsets[row])

    def derive(self, **changes: Any) -> Batch:
        """A new batch sharing this one's columns and ack token, with `changes` applied."""
        return replace(self, **changes)

    def select(self, rows: Sequence[int]) -> Batch:
        """The events at `rows` (ascending), as a new batch with the same context and
        ack token; sparse flags and fields are renumbered to the new rows.

        Transforms that drop some events (filter, route, throttle, sample) keep the rest
        this way. The token is shared, not forked: the caller decides who resolves it
        (one `select` forwarded per output, `fork` for each extra output, `resolve` when
        nothing is forwarded).
        """
        n = len(self.messages)
        if len(rows) == n:
            return self
        flags = fields = None
        if self.flags:
            flags = {new: self.flags[old] for new, old in enumerate(rows) if old in self.flags}
        if self.fields:
            fields = {new: self.fields[old] for new, old in enumerate(rows) if old in self.fields}
        tstrs = self.tstrs
        return replace(
            self,
            times=[self.times[i] for i in rows],
            messages=[self.messages[i] for i in rows],
            streams=[self.streams[i] for i in rows],
            offsets=[self.offsets[i] for i in rows],
            flags=flags or None,
            fields=fields or None,
            tstrs=[tstrs[i] for i in rows] if tstrs is not None and len(tstrs) == n else None,
        )


def event_id(id_prefix: str, offset: int) -> str:
    return f"{id_prefix}-{offset:x}"
