"""What the store is given to keep: consecutive events of one source, as columns.

Two kinds of group, told apart by `WriteGroup.docs`:

- **events** (``docs is None``): the columns of a `Batch` plus its file's constant parts
  (`path`, `meta`). The store keeps the columns and gives back the documents the local
  sink's schema renders from them (`codecs.document.render_ndjson`), byte for byte what
  the sink would have encoded, except that ``@timestamp`` always has nine fractional
  digits. This is the compact path: per event, only the message, the time and the
  offset take space on disk.
- **documents** (``docs`` given): arbitrary JSON documents kept exactly as they are, for
  producers that have no event columns. They cost their full compressed size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class WriteGroup:
    """Consecutive events of one source file (offsets ascending) to store."""

    source_key: str
    """Stable identity of the file (`FileContext.file_key`): what the mark is kept for.
    ``""`` means the events have no file position to deduplicate by: always stored."""
    offsets: Sequence[int]
    times: Sequence[int]
    """Event time, integer nanoseconds since the epoch."""
    docs: Sequence[bytes] | None = None
    """Documents kept as given (a *documents* group); None for an *events* group."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Values of the layout's label fields, the same for every event of the group; a
    field a document does not have is left out."""
    streams: Sequence[str] | None = None
    """Per-event value of the layout's stream field (``""``: the document has none).
    Queries on indexed fields are answered from `labels` and `streams`, not from the
    documents, so both must say what the documents say (None: no document has one)."""
    messages: Sequence[str] | None = None
    """Per-event message text. Required for an events group. For a documents group it
    must be the documents' message field exactly (searches skip what the message column
    does not hold); it is decoded from `docs` when None (a JSON decode per document)."""
    path: str = ""
    """Events group: the file's path (``log.file.path``)."""
    meta: bytes = b""
    """Events group: the schema's pre-encoded metadata members (`FileContext.meta_ecs`
    or `meta_fluentd`), the same for every event of the group."""
    flags: Mapping[int, Sequence[str]] | None = None
    """Events group, sparse: row -> flags (``truncated``, ``malformed``)."""
    fields: Mapping[int, Mapping[str, Any]] | None = None
    """Events group, sparse: row -> parsed fields added beside the message."""

    def check(self) -> None:
        """ValueError naming the group if its columns do not fit together."""
        n = len(self.offsets)
        if self.docs is None and self.messages is None:
            raise ValueError(f"write group {self.source_key!r}: events without messages")
        if not (
            n == len(self.times)
            and (self.docs is None or n == len(self.docs))
            and (self.messages is None or n == len(self.messages))
            and (self.streams is None or n == len(self.streams))
        ):
            raise ValueError(f"write group {self.source_key!r}: columns differ in length")
        for sparse in (self.flags, self.fields):
            if sparse and (min(sparse) < 0 or max(sparse) >= n):
                raise ValueError(f"write group {self.source_key!r}: a sparse row is out of range")
