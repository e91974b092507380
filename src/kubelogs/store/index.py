"""The block index: one SQLite database (WAL) per store, the source of truth.

What it records, and why each table exists:

- ``meta``: the format version (a newer one is refused with `StoreVersionError`) and the
  document layout (which field is the message, which fields are indexed labels).
- ``segments``: one row per segment file, with its size, event time range and when it
  was last written to, so retention can pick whole files to delete without reading them.
- ``blocks``: one row per block: where its record is (segment, offset, lengths), CRC-32
  of the message column and of the data, time range and document count. Queries select
  blocks by time here.
- ``label_sets`` / ``block_labels``: the distinct combinations of indexed label values
  (namespace, pod, container, stream, node) and, per block, how many documents of each
  it holds, so ``kubernetes.namespace:X`` selects blocks (and counts) from the index.
- ``sources``: the high-water mark (last stored offset) of every source file, committed
  in the same transaction as the blocks: this is what makes writes exactly-once.
- ``field_sets`` / ``blocks.field_set``: the field names of a block's documents (dotted
  paths of their leaves, as a sorted JSON list, kept once per distinct list), so that a
  query on a field no document has (a typo, a parsed field of unparsed logs) rejects
  the block without reading it, and `kubelogs search` can say so and suggest a name.
  The names of the fields every events document has (``@timestamp``, the message,
  ``stream``, ``log.offset``, ...) are not listed: readers add them (`row_fields`).
  Added to format 2 without a version bump: a writer adds the table and the column to
  an older store when it opens it (`initialise`), and blocks written before have no
  list (NULL), which readers treat as "any field" - old stores stay readable both ways.

Readers in other processes open the database read-only; WAL lets them read a consistent
snapshot while the writer commits.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.parse
from dataclasses import astuple, dataclass
from pathlib import Path

from kubelogs.codecs.document import Schema
from kubelogs.store.errors import (
    StoreCorruptError,
    StoreFullError,
    StoreLayoutError,
    StoreNotFound,
    StoreVersionError,
    is_disk_full,
)

FORMAT_VERSION = 2
"""Bump when a change would make an older kubelogs misread the store. 2: columnar blocks
(`store.block`). Before the first release, development builds wrote format 1 (blocks of
documents beside a lower-cased message column, earlier a Bloom filter); this version
refuses those stores with a message that says what to do."""
INDEX_NAME = "index.sqlite"
SEGMENTS_DIR = "segments"
LOCK_NAME = "writer.lock"
WAL_CHECKPOINT_PAGES = 64
WAL_SIZE_LIMIT = 1 << 20

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE segments (
    id INTEGER PRIMARY KEY,
    created_ns INTEGER NOT NULL,
    written_ns INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    blocks INTEGER NOT NULL DEFAULT 0,
    min_time INTEGER,
    max_time INTEGER
);
CREATE TABLE label_sets (id INTEGER PRIMARY KEY, labels TEXT NOT NULL UNIQUE);
CREATE TABLE field_sets (id INTEGER PRIMARY KEY, fields TEXT NOT NULL UNIQUE);
CREATE TABLE blocks (
    id INTEGER PRIMARY KEY,
    segment INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    text_len INTEGER NOT NULL,
    data_len INTEGER NOT NULL,
    text_crc INTEGER NOT NULL,
    data_crc INTEGER NOT NULL,
    min_time INTEGER NOT NULL,
    max_time INTEGER NOT NULL,
    docs INTEGER NOT NULL,
    raw_bytes INTEGER NOT NULL,
    field_set INTEGER
);
CREATE INDEX blocks_by_segment ON blocks (segment);
CREATE INDEX blocks_by_time ON blocks (max_time, min_time);
CREATE TABLE block_labels (
    label_set INTEGER NOT NULL,
    block INTEGER NOT NULL,
    docs INTEGER NOT NULL,
    PRIMARY KEY (label_set, block)
) WITHOUT ROWID;
CREATE INDEX block_labels_by_block ON block_labels (block);
CREATE TABLE sources (
    source_key TEXT PRIMARY KEY,
    high_water INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """One row of ``blocks``: where a block's two parts are in its segment, their CRC-32,
    its time range and size. The writer inserts it (`insert_block`); readers select it
    (`BLOCK_COLUMNS`)."""

    segment: int
    offset: int
    text_len: int
    data_len: int
    text_crc: int
    data_crc: int
    min_time: int
    max_time: int
    docs: int
    raw_bytes: int
    """Uncompressed size of the data part."""
    id: int = 0
    """Given by the index when the row is inserted (0 before)."""
    fields: str | None = None
    """The block's field list (`EncodedBlock.fields`) for the writer to insert; None:
    not known. Readers do not select it (they select `field_set` ids)."""

    @property
    def record_len(self) -> int:
        return self.text_len + self.data_len


BLOCK_COLUMNS = (
    "segment, offset, text_len, data_len, text_crc, data_crc, min_time, max_time, docs, "
    "raw_bytes, id"
)
"""The ``blocks`` columns in `BlockRecord` order, for ``SELECT``."""


def insert_block(conn: sqlite3.Connection, block: BlockRecord) -> int:
    """Insert `block` and its field list (inside the caller's transaction) and return
    the block's new id."""
    values: tuple[object, ...] = astuple(block)[:-2]  # not the id (the index assigns it)
    names = BLOCK_COLUMNS.rsplit(",", 1)[0]
    if block.fields is not None:
        conn.execute("INSERT OR IGNORE INTO field_sets (fields) VALUES (?)", (block.fields,))
        (field_set,) = conn.execute(
            "SELECT id FROM field_sets WHERE fields = ?", (block.fields,)
        ).fetchone()
        values = (*values, field_set)
        names += ", field_set"
    row_id = conn.execute(
        f"INSERT INTO blocks ({names}) VALUES ({', '.join('?' * len(values))})", values
    ).lastrowid
    assert row_id is not None
    return row_id


def has_field_sets(conn: sqlite3.Connection) -> bool:
    """Whether the index has field lists (stores created before them have not, until a
    writer opens them)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(blocks)")}
    return "field_set" in columns


def _add_field_sets(conn: sqlite3.Connection) -> None:
    """Give a store created before field lists the table and column (its blocks keep
    NULL: any field)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not has_field_sets(conn):
            conn.execute(
                "CREATE TABLE IF NOT EXISTS field_sets "
                "(id INTEGER PRIMARY KEY, fields TEXT NOT NULL UNIQUE)"
            )
            conn.execute("ALTER TABLE blocks ADD COLUMN field_set INTEGER")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


ROW_FIELDS: dict[Schema, tuple[str, ...]] = {
    "ecs": ("@timestamp", "message", "stream", "log.file.path", "log.offset", "log.flags"),
    "fluentd": ("@timestamp", "log", "stream", "time", "flags"),
}
"""Fields an events document of each schema has (or may have: flags) whatever its
file: not kept in the field lists (`codecs.document.render_ndjson` writes them)."""


def row_fields(schema: Schema) -> tuple[str, ...]:
    return ROW_FIELDS[schema]


@dataclass(frozen=True, slots=True)
class Layout:
    """Which document fields the store understands, fixed when the store is created."""

    message_field: str
    """The text that bare words and phrases search (and the message column holds)."""
    label_fields: tuple[str, ...]
    """Fields constant per source file and indexed per block (namespace, pod, ...)."""
    stream_field: str = "stream"
    """A per-event field that is indexed like a label (``stdout``/``stderr``)."""
    schema: Schema = "ecs"
    """How documents are rendered from the stored columns (`codecs.document`)."""

    @property
    def indexed(self) -> frozenset[str]:
        return frozenset((*self.label_fields, self.stream_field))

    def to_json(self) -> str:
        return json.dumps(
            {
                "message_field": self.message_field,
                "label_fields": list(self.label_fields),
                "stream_field": self.stream_field,
                "schema": self.schema,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Layout:
        data = json.loads(text)
        schema = data.get("schema", "ecs")
        if schema not in ("ecs", "fluentd"):
            raise ValueError(f"unknown document schema {schema!r}")
        return cls(data["message_field"], tuple(data["label_fields"]), data["stream_field"], schema)


ECS_LAYOUT = Layout(
    message_field="message",
    label_fields=(
        "kubernetes.namespace",
        "kubernetes.pod.name",
        "kubernetes.container.name",
        "kubernetes.node.name",
        "host.name",
    ),
)
FLUENTD_LAYOUT = Layout(
    message_field="log",
    label_fields=(
        "kubernetes.namespace_name",
        "kubernetes.pod_name",
        "kubernetes.container_name",
        "kubernetes.host",
        "host.name",
    ),
    schema="fluentd",
)


def canonical_labels(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True, separators=(",", ":"))


def connect(store: Path, *, readonly: bool) -> sqlite3.Connection:
    """Open the index; translate SQLite's failures into store errors."""
    db = store / INDEX_NAME
    if readonly and not db.exists():
        if not store.exists():
            raise StoreNotFound(f"{store}: no such store directory")
        raise StoreNotFound(f"{store}: not a kubelogs store (no {INDEX_NAME})")
    try:
        if readonly:
            uri = f"file:{urllib.parse.quote(str(db))}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=10)
        else:
            conn = sqlite3.connect(db, check_same_thread=False, timeout=10)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            # The WAL is space that `max_size` does not count: by default it grows to
            # 4 MiB (1000 pages) before a checkpoint and never shrinks, enough to fill a
            # small disk on its own. Checkpoint every 64 pages and cut it back to 1 MiB.
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        if is_disk_full(exc):
            raise StoreFullError(f"{db}: the disk is full; cannot open the index ({exc})") from exc
        raise StoreCorruptError(f"{db}: the store index cannot be read ({exc})") from exc
    conn.isolation_level = None  # explicit BEGIN/COMMIT
    return conn


def initialise(conn: sqlite3.Connection, store: Path, layout: Layout, now_ns: int) -> Layout:
    """Create the schema in an empty index, or check an existing one; return its layout."""
    try:
        has_meta = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        if not has_meta:
            conn.execute("BEGIN IMMEDIATE")
            for statement in _split(_SCHEMA):  # not executescript: it would COMMIT first
                conn.execute(statement)
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("format_version", str(FORMAT_VERSION)),
                    ("layout", layout.to_json()),
                    ("created_ns", str(now_ns)),
                ],
            )
            conn.execute("COMMIT")
            return layout
    except sqlite3.DatabaseError as exc:
        if is_disk_full(exc):
            raise StoreFullError(
                f"{store}: the disk is full; cannot create the index ({exc})"
            ) from exc
        raise StoreCorruptError(f"{store}: the store index cannot be created ({exc})") from exc
    existing = read_layout(conn, store)
    try:
        if not has_field_sets(conn):
            _add_field_sets(conn)
    except sqlite3.DatabaseError as exc:
        raise StoreCorruptError(f"{store}: the store index cannot be updated ({exc})") from exc
    if existing != layout:
        raise StoreLayoutError(
            f"{store}: the store holds {existing.message_field!r}-message documents with "
            f"labels {list(existing.label_fields)}, not the configured schema's; use another "
            "path for a different schema"
        )
    return existing


def _split(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def read_layout(conn: sqlite3.Connection, store: Path) -> Layout:
    """Check the format version and return the store's layout."""
    try:
        rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as exc:
        raise StoreCorruptError(f"{store}: the store index is damaged ({exc})") from exc
    try:
        version = int(rows["format_version"])
        layout = Layout.from_json(rows["layout"])
    except (KeyError, ValueError, TypeError) as exc:
        raise StoreCorruptError(f"{store}: the store index has no valid format record") from exc
    if version > FORMAT_VERSION:
        raise StoreVersionError(
            f"{store}: written by a newer kubelogs (store format {version}; this version "
            f"reads up to {FORMAT_VERSION}); upgrade kubelogs to read it"
        )
    if version < FORMAT_VERSION:
        raise StoreVersionError(
            f"{store}: written by a development version of kubelogs (store format "
            f"{version}, before columnar blocks), which this version cannot read; delete "
            "the directory or use another path, and the agent starts a new store"
        )
    return layout
