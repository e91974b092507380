"""The embedded local store and its query language.

Built like VictoriaLogs and Loki rather than like a database of rows: events are
appended as zstd-compressed columnar blocks to segment files (the messages in a column of
their own, times and offsets delta-encoded, each file's metadata once per block, and
documents rendered from the columns when read), and a small SQLite index records per
block its place, time range, label values and field names, so a query reads only blocks
that can match, and a word search reads the message columns before anything else. See
`store.writer` for the durability and exactly-once invariants, `store.block` for the
block format, `store.reader` for search, `store.planner` for how queries prune,
`store.column` for the message column, `store.aggregate` for histograms and top values,
and `store.query` for the language shared with the Elasticsearch compiler.

The reading side (`StoreReader`, `parse_query`, `Hit`) is imported on first use: it
pulls in the query parser (lark), which an agent that only writes never needs.
"""

import importlib
from typing import TYPE_CHECKING, Any

from kubelogs.store.errors import QueryError as QueryError
from kubelogs.store.errors import QuerySyntaxError as QuerySyntaxError
from kubelogs.store.errors import StoreCorruptError as StoreCorruptError
from kubelogs.store.errors import StoreError as StoreError
from kubelogs.store.errors import StoreFullError as StoreFullError
from kubelogs.store.errors import StoreLayoutError as StoreLayoutError
from kubelogs.store.errors import StoreLockedError as StoreLockedError
from kubelogs.store.errors import StoreNotFound as StoreNotFound
from kubelogs.store.errors import StoreVersionError as StoreVersionError
from kubelogs.store.group import WriteGroup as WriteGroup
from kubelogs.store.index import ECS_LAYOUT as ECS_LAYOUT
from kubelogs.store.index import FLUENTD_LAYOUT as FLUENTD_LAYOUT
from kubelogs.store.index import Layout as Layout
from kubelogs.store.writer import StoreWriter as StoreWriter
from kubelogs.store.writer import WriteResult as WriteResult

if TYPE_CHECKING:
    from kubelogs.store.query_parser import parse_query as parse_query
    from kubelogs.store.reader import Hit as Hit
    from kubelogs.store.reader import StoreReader as StoreReader

_LAZY = {
    "Hit": "kubelogs.store.reader",
    "StoreReader": "kubelogs.store.reader",
    "parse_query": "kubelogs.store.query_parser",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kubelogs.store' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ECS_LAYOUT",
    "FLUENTD_LAYOUT",
    "Hit",
    "Layout",
    "QueryError",
    "QuerySyntaxError",
    "StoreCorruptError",
    "StoreError",
    "StoreFullError",
    "StoreLayoutError",
    "StoreLockedError",
    "StoreNotFound",
    "StoreReader",
    "StoreVersionError",
    "StoreWriter",
    "WriteGroup",
    "WriteResult",
    "parse_query",
]
