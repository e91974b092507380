"""`kubelogs search --es URL --index PATTERN` gives the same answers as on the local store.

One agent ships a generated node tree to both destinations at once (fan-out: a `local`
sink and an `elasticsearch` sink); then every query of the table runs through the CLI
against the store and against the node, and the counts (and, for some, the documents)
must agree. The table covers each construct of the language: words, phrases, field
values on keyword fields, wildcards, ranges, and/or/not, parentheses, labels.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from es_helpers import ship_to_node_and_store

from support.es_servers import SearchServer

QUERIES = [
    "",
    "error",
    '"upstream call failed"',
    "processed order",
    "GET or POST",
    "kubernetes.namespace:checkout",
    "kubernetes.container.name:app and not error",
    "stream:stderr",
    "kubernetes.pod.name:orders*",
    "order*",
    "orders",
    "example",
    "log.offset >= 10000",
    "(warn or error) and kubernetes.namespace:ingress-nginx",
    "not kubernetes.namespace:checkout",
]
"""Each must match something on this tree except where noted, so that agreement means
something (checked below)."""
JSON_QUERIES = ['"upstream call failed"', "kubernetes.namespace:checkout and error"]


def _search(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubelogs", "search", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _canonical(ndjson: str) -> list[str]:
    return sorted(json.dumps(json.loads(line), sort_keys=True) for line in ndjson.splitlines())


def test_query_table_answers_the_same_on_the_store_and_the_node(
    tmp_path: Path, server: SearchServer
) -> None:
    index, store, records = ship_to_node_and_store(
        tmp_path, server, lines=6000, seed=5, prefix="same"
    )
    es = ["--es", server.url, "--index", index]
    local = ["--store", str(store)]

    mismatches = []
    counts = {}
    for q in QUERIES:
        a = _search(*local, "--count", q)
        b = _search(*es, "--count", q)
        assert 0 == a.returncode, a.stderr
        assert 0 == b.returncode, b.stderr
        counts[q] = (a.stdout.strip(), b.stdout.strip())
        if a.stdout.strip() != b.stdout.strip():
            mismatches.append((q, a.stdout.strip(), b.stdout.strip()))
    docs_differ = []
    for q in JSON_QUERIES:
        a = _search(*local, "--limit", "0", "--output", "json", q)
        b = _search(*es, "--limit", "0", "--output", "json", q)
        if _canonical(a.stdout) != _canonical(b.stdout) or not a.stdout:
            docs_differ.append(q)
    newest = _search(*es, "--limit", "3", "--output", "json", "error")
    newest_local = _search(*local, "--limit", "3", "--output", "json", "error")

    assert [] == mismatches, counts
    assert [] == docs_differ
    assert str(records) == counts[""][0]
    assert [] == [q for q, c in counts.items() if int(c[0]) == 0], counts
    assert newest_local.stdout == newest.stdout


@pytest.mark.parametrize("query", ["a:(", "(error"])
def test_invalid_query_is_a_usage_error_before_any_request(query: str) -> None:
    r = _search("--es", "http://127.0.0.1:9", "--count", query)

    assert 1 == r.returncode
    assert "invalid query" in r.stderr
