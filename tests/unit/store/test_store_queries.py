"""Search answers agree with a brute-force evaluation of the same question.

Each query in the table comes with an independent Python predicate over the decoded
document; the store (block pruning, label shortcuts, message columns, prefilters, exact
matcher) must return exactly the documents the predicate accepts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from kubelogs.codecs.timestamps import parse_rfc3339_ns
from kubelogs.store import ECS_LAYOUT, StoreReader, StoreWriter, WriteGroup
from kubelogs.store.matcher import compile_matcher
from kubelogs.store.planner import split_time
from kubelogs.store.query_parser import parse_query
from kubelogs.store.reader import Hit
from support.store_docs import Dataset, counting_reads, make_dataset

T0 = "2025-01-15T10:00:01Z"
T0_NS = 1_736_935_201_000_000_000


def words(doc: dict[str, Any]) -> list[str]:
    return re.findall(r"\w+", doc["message"].lower())


def has_phrase(doc: dict[str, Any], phrase: str) -> bool:
    want = re.findall(r"\w+", phrase.lower())
    got = words(doc)
    return any(got[i : i + len(want)] == want for i in range(len(got) - len(want) + 1))


def status(doc: dict[str, Any]) -> int:
    return int(doc.get("http", {}).get("status", -1))


def ts(doc: dict[str, Any]) -> int:
    ns = parse_rfc3339_ns(doc["@timestamp"].encode())
    assert ns is not None
    return ns


Predicate = Callable[[dict[str, Any]], bool]
CASES: list[tuple[str, Predicate]] = [
    ("", lambda d: True),
    ("error", lambda d: "error" in words(d)),
    ("ERROR", lambda d: "error" in words(d)),
    ('"request failed"', lambda d: has_phrase(d, "request failed")),
    ("message:timed", lambda d: "timed" in words(d)),
    ("ord*", lambda d: any(w.startswith("ord") for w in words(d))),
    ("kubernetes.namespace:payments", lambda d: d["kubernetes"]["namespace"] == "payments"),
    ("kubernetes.namespace:pay*", lambda d: d["kubernetes"]["namespace"].startswith("pay")),
    ("kubernetes.namespace:Payments", lambda d: False),
    ("stream:stderr", lambda d: d.get("stream") == "stderr"),
    (
        "stream:stdout and not kubernetes.container.name:app",
        lambda d: d.get("stream") == "stdout" and d["kubernetes"]["container"]["name"] != "app",
    ),
    ("kubernetes.labels.app:orders", lambda d: d["kubernetes"]["labels"]["app"] == "orders"),
    ("kubernetes.labels.app:*", lambda d: True),
    ("not kubernetes.labels.app:orders", lambda d: d["kubernetes"]["labels"]["app"] != "orders"),
    (
        "kubernetes.labels.app:orders and stream:stderr",
        lambda d: d["kubernetes"]["labels"]["app"] == "orders" and d.get("stream") == "stderr",
    ),
    ("log.file.path:*", lambda d: True),
    ("http.status >= 500", lambda d: status(d) >= 500),
    ("http.status:404", lambda d: status(d) == 404),
    ("http.status < 201 and level:warn", lambda d: 0 <= status(d) < 201 and d["level"] == "warn"),
    ("level:error or level:warn", lambda d: d.get("level") in ("error", "warn")),
    ("user_id:*", lambda d: "user_id" in d),
    ("not user_id:*", lambda d: "user_id" not in d),
    (
        "(error or exception) and kubernetes.namespace:checkout",
        lambda d: (
            bool({"error", "exception"} & set(words(d)))
            and d["kubernetes"]["namespace"] == "checkout"
        ),
    ),
    (
        "java.lang.NullPointerException",
        lambda d: has_phrase(d, "java lang nullpointerexception"),
    ),
    (f"@timestamp >= {T0}", lambda d: ts(d) >= T0_NS),
    (
        f"@timestamp < {T0} or stream:stderr",
        lambda d: ts(d) < T0_NS or d.get("stream") == "stderr",
    ),
    ("host.name:node-1 and cache", lambda d: "cache" in words(d)),
    ("nosuchwordanywhere", lambda d: False),
    # Offsets are a column: answered without rendering documents.
    ("log.offset > 40000", lambda d: d["log"]["offset"] > 40000),
    (
        "stream:stderr and log.offset <= 30000",
        lambda d: d.get("stream") == "stderr" and d["log"]["offset"] <= 30000,
    ),
    ("log.offset:0", lambda d: d["log"]["offset"] == 0),
    (
        "log.offset < 20000 and not cache",
        lambda d: d["log"]["offset"] < 20000 and "cache" not in words(d),
    ),
    # Fields no document has: ruled out by the blocks' field lists.
    ("kubernetes.namspace:payments", lambda d: False),
    ("not kubernetes.namspace:*", lambda d: True),
    ("nosuch.field:1 or stream:stderr", lambda d: d.get("stream") == "stderr"),
    ("kubernetes:*", lambda d: True),
    ("http:*", lambda d: "http" in d),
]


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return make_dataset(seed=5, containers=6, lines=1500, per_batch=200)


@pytest.fixture(scope="module")
def store(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("queries") / "store"
    with StoreWriter(path, layout=ECS_LAYOUT, block_docs=700) as writer:
        for i in range(0, len(dataset.groups), 5):
            writer.write(dataset.groups[i : i + 5])
    return path


@pytest.fixture(scope="module")
def decoded(dataset: Dataset) -> list[tuple[bytes, dict[str, Any]]]:
    return [(d, msgspec.json.decode(d)) for d in dataset.docs]


@pytest.mark.parametrize(("query", "predicate"), CASES, ids=[q or "<all>" for q, _ in CASES])
def test_query_matches_brute_force(
    store: Path,
    decoded: list[tuple[bytes, dict[str, Any]]],
    query: str,
    predicate: Predicate,
) -> None:
    expected = sorted(raw for raw, doc in decoded if predicate(doc))

    with StoreReader(store) as reader:
        count = reader.count(query)
        every = [h.doc for h in reader.search(query, limit=0)]

    assert len(expected) == count
    assert expected == sorted(every)
    assert len(every) == len(set(every))


def test_dataset_exercises_the_interesting_cases(
    decoded: list[tuple[bytes, dict[str, Any]]],
) -> None:
    """Guard against a dataset where the table trivially passes (all or nothing)."""
    for query, predicate in CASES:
        n = sum(1 for _, d in decoded if predicate(d))
        if query in (
            "",
            "kubernetes.labels.app:*",
            "log.file.path:*",
            "not kubernetes.namspace:*",
            "kubernetes:*",
        ):
            assert n == len(decoded)
        elif query not in (
            "nosuchwordanywhere",
            "kubernetes.namespace:Payments",
            "kubernetes.namspace:payments",
        ):
            assert 0 < n < len(decoded), query


def test_limit_returns_the_newest_matches_oldest_first(store: Path) -> None:
    with StoreReader(store) as reader:
        everything = reader.search("stream:stdout", limit=0)
        newest = reader.search("stream:stdout", limit=25)

    assert everything == sorted(everything)
    assert everything[-25:] == newest


def test_iteration_is_in_time_order(store: Path) -> None:
    with StoreReader(store) as reader:
        times = [h.time_ns for h in reader.iter_matches("")]

    assert times == sorted(times)


def test_since_and_until_bound_the_time_column(store: Path, dataset: Dataset) -> None:
    times = sorted(t for g in dataset.groups for t in g.times)
    lo, hi = times[100], times[-100]

    with StoreReader(store) as reader:
        q = reader.prepare("", since_ns=lo, until_ns=hi)
        count = reader.count(q)
        hits = reader.search(q, limit=0)

    assert sum(1 for t in times if lo <= t <= hi) == count
    assert all(lo <= h.time_ns <= hi for h in hits)


class TestPruning:
    """Queries read only blocks that can match (the reason for the block index)."""

    def test_label_count_comes_from_the_index(self, store: Path) -> None:
        with StoreReader(store) as reader:
            reads = counting_reads(reader)
            count = reader.count("kubernetes.namespace:payments or stream:stderr")

        assert count > 0
        assert [] == reads

    def test_rare_word_reads_few_blocks(self, store: Path, dataset: Dataset) -> None:
        messages = (
            msgspec.json.decode(d)["message"] for d in dataset.docs[len(dataset.docs) // 3 :]
        )
        rare = next(found[0] for m in messages if (found := re.findall(r"[0-9a-f]{16,}", m)))
        with StoreReader(store) as reader:
            total_blocks = reader.stats().blocks
            reads = counting_reads(reader)
            count = reader.count(rare)

        assert count >= 1
        assert total_blocks >= 10
        assert len(reads) <= 2

    def test_word_only_outside_messages_reads_no_block(
        self, store: Path, decoded: list[tuple[bytes, dict[str, Any]]]
    ) -> None:
        """Every document's JSON holds "pods" (its log path), no message does: the message
        columns answer without decompressing any block."""
        assert all(b"pods" in raw for raw, _ in decoded)
        with StoreReader(store) as reader:
            reads = counting_reads(reader)
            count = reader.count("pods")
            hits = reader.search("pods or nosuchword", limit=10)

        assert 0 == count
        assert [] == hits
        assert [] == reads

    def test_word_search_looks_only_at_lines_holding_the_word(
        self, store: Path, decoded: list[tuple[bytes, dict[str, Any]]]
    ) -> None:
        """The word "orders" is in many documents' JSON (namespace, labels) but in fewer
        messages: only documents whose message holds it are looked at."""
        in_message = {raw for raw, d in decoded if "orders" in d["message"].lower()}
        in_json = {raw for raw, _ in decoded if b"orders" in raw.lower()}
        assert len(in_message) < len(in_json)

        with StoreReader(store) as reader:
            looked_at: list[bytes] = []
            original = reader._run_matches

            def run_matches(q: Any, block: Any, plan: Any, run: int, rows: Any) -> Any:
                looked_at.extend(block.doc(i) for i in rows)
                return original(q, block, plan, run, rows)

            reader._run_matches = run_matches  # type: ignore[method-assign]
            count = reader.count("orders and not kubernetes.namespace:nosuch")

        assert sum(1 for _, d in decoded if "orders" in words(d)) == count
        assert in_message == set(looked_at)
        assert len(in_message) == len(looked_at)

    def test_words_on_different_lines_of_a_block_decode_nothing(self, tmp_path: Path) -> None:
        """Both words occur in the block, never in one message: no document is read."""
        docs = [b'{"message":"alpha %d"}' % i for i in range(50)]
        docs += [b'{"message":"beta %d"}' % i for i in range(50)]
        messages = [msgspec.json.decode(d)["message"] for d in docs]
        n = len(docs)
        with StoreWriter(tmp_path / "s", layout=ECS_LAYOUT) as writer:
            writer.write([WriteGroup("f", list(range(n)), list(range(n)), docs, messages=messages)])
        with StoreReader(tmp_path / "s") as reader:
            reads = counting_reads(reader)
            both = reader.count("alpha and beta")
            reads_for_both = list(reads)
            either = reader.count("alpha or beta")
            alpha_not_beta = reader.count("alpha and not beta")

        assert (0, n, 50) == (both, either, alpha_not_beta)
        assert [] == reads_for_both
        assert 2 == len(reads)  # the other two need the documents

    def test_label_condition_skips_blocks_without_the_label(self, tmp_path: Path) -> None:
        """Blocks written from one namespace only are never read for another."""
        ds = make_dataset(seed=9, containers=4, lines=400, per_batch=100)
        namespaces = {g.labels["kubernetes.namespace"] for g in ds.groups}
        assert len(namespaces) >= 2
        with StoreWriter(tmp_path / "s", layout=ECS_LAYOUT) as writer:
            for group in ds.groups:
                writer.write([group])  # one source per block
        target = sorted(namespaces)[0]
        with StoreReader(tmp_path / "s") as reader:
            reads = counting_reads(reader)
            hits = reader.search(f"kubernetes.namespace:{target} and not error", limit=0)
            blocks = reader.stats().blocks

        assert hits
        assert set(reads) <= {h.block for h in hits}
        assert len(reads) < blocks


def test_hits_are_hashable_sortable_records(store: Path) -> None:
    with StoreReader(store) as reader:
        a, b = reader.search("", limit=2)

    assert isinstance(a, Hit)
    assert a < b


ODD_DOCS = [
    b'{"message":"hello world"}',
    b'{"message":null}',
    b'{"other":"hello"}',
    b'{"message":["hello"]}',
    b'{"message":5}',
    b"[1,2]",
    b'{"message":"HELLO","message":"bye"}',
    b'{"message":"Hello\\nWorld"}',
    b"not json",
]


@pytest.mark.parametrize(
    "query",
    [
        "hello",
        "world",
        '"hello world"',
        "bye",
        "message:*",
        "not message:*",
        "message:5",
        "hel*",
        "not hello",
        "hello or other:hello",
        f"@timestamp >= {T0} and hello",
    ],
)
def test_documents_of_any_shape_are_matched_as_the_matcher_says(tmp_path: Path, query: str) -> None:
    """Message-only decoding and the column agree with the matcher on the whole document
    (missing, null, non-string and duplicate messages, non-objects, invalid JSON)."""
    times = [T0_NS - 5 + i for i in range(len(ODD_DOCS))]
    with StoreWriter(tmp_path / "s", layout=ECS_LAYOUT) as writer:
        writer.write([WriteGroup("", list(range(len(ODD_DOCS))), times, ODD_DOCS)])
    node, lo, hi = split_time(parse_query(query))
    matcher = compile_matcher(node, "message")
    expected = []
    for doc, t in zip(ODD_DOCS, times, strict=True):
        try:
            decoded = msgspec.json.decode(doc)
        except msgspec.DecodeError:
            continue
        if isinstance(decoded, dict) and lo <= t <= hi and matcher(decoded, t):
            expected.append(doc)

    with StoreReader(tmp_path / "s") as reader:
        found = sorted(h.doc for h in reader.search(query, limit=0))
        count = reader.count(query)

    assert sorted(expected) == found
    assert len(expected) == count
