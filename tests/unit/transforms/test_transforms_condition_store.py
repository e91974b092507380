"""Conditions select what `kubelogs search` finds: the same queries, counted by a real
local store (planner, pruning, column scans) and by `Condition` on the batches written
into it; and `kubelogs validate` shows a condition's syntax error with a caret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubelogs.store import ECS_LAYOUT, StoreReader, StoreWriter
from kubelogs.transforms.condition import Condition
from support.store_docs import Dataset, make_dataset

QUERIES = [
    "error",
    "ERROR or warn*",
    '"request failed"',
    '"cache miss" or "validation failed"',
    "not error",
    "level:error",
    "http.status >= 500",
    "kubernetes.namespace:payments and not level:info",
    "kubernetes.labels.app:* and stream:stderr",
    "kubernetes.container.image:example* and log.offset < 1000",
    "host.name:node-1 and (timeout or fail*)",
    "not kubernetes.namespace:kube-system and user_id:*",
    "log.file.path:*payments* GET",
]


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return make_dataset(seed=11, containers=6, lines=1200, per_batch=150)


@pytest.fixture(scope="module")
def store(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cond") / "store"
    with StoreWriter(path, layout=ECS_LAYOUT, block_docs=500) as writer:
        for i in range(0, len(dataset.groups), 4):
            writer.write(dataset.groups[i : i + 4])
    return path


@pytest.mark.parametrize("query", QUERIES)
def test_condition_counts_what_the_store_finds(dataset: Dataset, store: Path, query: str) -> None:
    condition = Condition(query)
    selected = sum(len(condition.select(b)) for b in dataset.batches)
    with StoreReader(store) as reader:
        assert reader.count(query) == selected
    assert 0 < selected < sum(len(b) for b in dataset.batches)


def test_validate_prints_the_caret(tmp_path: Path) -> None:
    cfg = tmp_path / "k.yaml"
    cfg.write_text(
        "sources:\n  app: {type: file, paths: [/var/log/x.log]}\n"
        "transforms:\n"
        "  quiet: {type: filter, inputs: [app], condition: 'level:error and (a or'}\n"
        "sinks:\n  out: {type: blackhole, inputs: [quiet]}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBELOGS_")}
    r = subprocess.run(
        [sys.executable, "-m", "kubelogs", "validate", "-c", str(cfg)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert lines[1] == "transforms.quiet.condition: the query ends too early at column 22"
    assert lines[2] == "    level:error and (a or"
    assert lines[3] == "    " + " " * 21 + "^"
