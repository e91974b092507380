"""The store's public API is pinned, and writing never loads the query parser."""

from __future__ import annotations

import subprocess
import sys

import kubelogs.store


def test_public_api_is_pinned() -> None:
    assert [
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
    ] == kubelogs.store.__all__
    for name in kubelogs.store.__all__:
        assert getattr(kubelogs.store, name) is not None


def test_the_local_sink_does_not_import_the_query_parser() -> None:
    """Agents keep their memory for logs: lark and the reader load only for search."""
    code = "import sys, kubelogs.sinks.local; print('lark' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert "False" == out.stdout.strip()
