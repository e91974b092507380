"""`kubelogs search --histogram` and `--top FIELD`: counts from the store that agree
with `--count` and with the documents, as text and as JSON, and their usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from kubelogs.cli.search_agg import human_step, sparkline
from kubelogs.store import ECS_LAYOUT, StoreReader, StoreWriter
from support.store_docs import make_dataset


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("agg-cli") / "store"
    dataset = make_dataset(seed=23, containers=4, lines=4000, per_batch=200)
    with StoreWriter(path, layout=ECS_LAYOUT, block_docs=250) as writer:  # 16+ blocks
        writer.write(dataset.groups)
    return path


def kubelogs(*argv: str, workers: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    if workers:
        env["KUBELOGS_SEARCH_WORKERS"] = workers
    return subprocess.run(
        [sys.executable, "-m", "kubelogs", "search", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.parametrize("workers", ["1", "3"])
def test_json_output_agrees_with_count_and_the_documents(store: Path, workers: str) -> None:
    q = "error or stream:stderr"
    argv = ["-o", "json", "--histogram", "--top", "kubernetes.namespace", "--top", "stream"]
    r = kubelogs("--store", str(store), *argv, "--top-n", "50", q, workers=workers)
    count = kubelogs("--store", str(store), "--count", q)
    with StoreReader(store) as reader:
        docs = [msgspec.json.decode(h.doc) for h in reader.search(q, limit=0)]

    assert 0 == r.returncode, r.stderr
    body = json.loads(r.stdout)
    assert int(count.stdout) == body["total"] == sum(b["count"] for b in body["buckets"])
    namespaces = Counter(d["kubernetes"]["namespace"] for d in docs)
    assert dict(namespaces) == {v["value"]: v["count"] for v in body["top"]["kubernetes.namespace"]}
    assert 48 <= len(body["buckets"]) <= 120
    assert body["buckets"] == sorted(body["buckets"], key=lambda b: b["time"])


def test_text_output_has_a_sparkline_a_table_and_the_top_values(store: Path) -> None:
    r = kubelogs("--store", str(store), "--histogram", "--top", "kubernetes.namespace",
                 "--top-n", "2")  # fmt: skip
    json_r = kubelogs("--store", str(store), "-o", "json", "--histogram", "--top",
                      "kubernetes.namespace", "--top-n", "2")  # fmt: skip
    body = json.loads(json_r.stdout)

    lines = r.stdout.splitlines()
    assert 0 == r.returncode, r.stderr
    assert f"{body['total']} matches" == lines[0]
    assert "|" in lines[1]
    assert "per bar)" in lines[1]
    table = lines[2 : 2 + len(body["buckets"])]
    assert [b["count"] for b in body["buckets"]] == [int(ln.split()[1]) for ln in table]
    top = lines[lines.index("top kubernetes.namespace:") + 1 :]
    assert [f"{v['count']}  {v['value']}" for v in body["top"]["kubernetes.namespace"]] == [
        ln.strip() for ln in top
    ]
    assert 2 == len(top)


def test_a_field_nobody_has_says_so(store: Path) -> None:
    r = kubelogs("--store", str(store), "--top", "nosuchfield")

    assert 0 == r.returncode
    assert "(no document has this field)" in r.stdout
    assert "no document has field nosuchfield" not in r.stderr  # not a query field


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--histogram", "--follow"], "--histogram/--top and --follow cannot be combined"),
        (["--top", "stream", "--count"], "--histogram/--top and --count cannot be combined"),
        (["--top", "stream", "--top-n", "0"], "--top-n 0: must be 1 or more"),
    ],
)
def test_usage_errors_are_one_line(store: Path, argv: list[str], message: str) -> None:
    r = kubelogs("--store", str(store), *argv)

    assert 1 == r.returncode
    assert f"kubelogs search: {message}" == r.stderr.strip()


def test_sparkline_and_step_names() -> None:
    assert " ▁█▄" == sparkline([0, 1, 8, 4])
    assert "   " == sparkline([0, 0, 0])
    assert ["500ms", "30s", "5m", "2h", "1d"] == [
        human_step(n * 10**6) for n in (500, 30_000, 300_000, 7_200_000, 86_400_000)
    ]


def test_the_span_is_the_query_s_else_now_else_the_data_s() -> None:
    from kubelogs.cli.search_agg import histogram_span
    from kubelogs.store.planner import MAX_TIME, MIN_TIME

    now = 1_000
    assert (10, 20) == histogram_span(10, 20, 0, 900, now)
    assert (10, now) == histogram_span(10, MAX_TIME, 0, 900, now)  # --since: up to now
    assert (10, 2_000) == histogram_span(10, None, 0, 2_000, now)  # data ahead of the clock
    assert (0, 900) == histogram_span(MIN_TIME, MAX_TIME, 0, 900, now)
    assert (0, 20) == histogram_span(None, 20, 0, 900, now)
    assert None is histogram_span(MIN_TIME, MAX_TIME, None, None, now)  # empty store


def test_an_empty_store_has_no_histogram(tmp_path: Path) -> None:
    StoreWriter(tmp_path / "empty", layout=ECS_LAYOUT).close()

    r = kubelogs("--store", str(tmp_path / "empty"), "-o", "json", "--histogram")

    assert 0 == r.returncode, r.stderr
    assert {"total": 0, "step_ns": 0, "buckets": [], "top": {}} == json.loads(r.stdout)
