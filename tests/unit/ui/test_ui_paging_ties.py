"""Paging of `kubelogs ui` over the local store when many matches share one nanosecond:
every match comes exactly once, newest first, whatever the ties (the cursor is the
time, block and row of the last hit shown, not the time alone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from kubelogs.pipeline.event import Batch
from kubelogs.store import ECS_LAYOUT, StoreReader, StoreWriter
from kubelogs.ui.backend import PAGE, StoreBackend
from kubelogs.ui.server import make_app
from support.store_docs import groups_of, make_batches

T0 = 1_700_000_000_000_000_000


def tied(batches: list[Batch], pattern: list[int]) -> list[Batch]:
    """The batches with their times replaced: event k (in write order) gets
    ``T0 + pattern[k % len(pattern)]``, so most events share a handful of nanoseconds."""
    out, k = [], 0
    for b in batches:
        times = []
        for _ in b.times:
            times.append(T0 + pattern[k % len(pattern)])
            k += 1
        out.append(
            Batch(b.ctx, times, list(b.messages), list(b.streams), list(b.offsets), b.fields)
        )
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~1,600 events over 3 containers: 9 of every 10 at one of two nanoseconds (a tie
    of ~700 each, across many blocks), the rest spread over 40 others."""
    path = tmp_path_factory.mktemp("ties") / "store"
    pattern = [5, 5, 5, 5, 9, 9, 9, 9, 9, 0]
    spread = iter(range(10, 50))
    pattern = [p if p else next(spread) for p in pattern * 4]
    batches = tied(make_batches(seed=5, containers=3, lines=540, per_batch=90), pattern)
    with StoreWriter(path, layout=ECS_LAYOUT, block_docs=128) as writer:
        writer.write(groups_of(batches))
    return path


async def pages(store: Path, params: dict[str, str]) -> list[list[tuple[str, str]]]:
    server = TestServer(make_app(StoreBackend(store), None), host="127.0.0.1")
    client: TestClient[Any, Any] = TestClient(server)
    await client.start_server()
    out: list[list[tuple[str, str]]] = []
    try:
        body: dict[str, Any] = {"next": None}
        while True:
            extra = {"before": body["next"]} if body["next"] else {}
            r = await client.get("/api/search", params={**params, **extra})
            assert 200 == r.status, await r.text()
            body = await r.json()
            out.append([(h["t"], h["id"]) for h in body["hits"]])
            if not body["next"]:
                return out
            assert len(out) < 100, "paging does not end"
    finally:
        await client.close()


@pytest.mark.parametrize("q", ["", "stream:stderr", "error or warn*"])
async def test_every_match_once_in_order_when_hundreds_share_a_nanosecond(
    store: Path, q: str
) -> None:
    got = await pages(store, {"q": q, "range": "all"})
    with StoreReader(store) as reader:
        expected = [
            (str(h.time_ns), f"{h.block}.{h.row}") for h in reversed(reader.search(q, limit=0))
        ]
        biggest_tie = max(sum(1 for t, _ in expected if t == str(T0 + n)) for n in (5, 9))

    assert expected == [hit for page in got for hit in page]
    assert all(PAGE == len(page) for page in got[:-1])
    assert biggest_tie > PAGE + 64 or q  # the whole store: a tie longer than a page
