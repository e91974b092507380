"""Paging of `kubelogs ui` over the local store when many matches share one nanosecond:
every match comes exactly once, newest first, whatever the ties (the cursor is the
time, block and row of the last hit shown, not the time alone); and "show context" on a
store of the fluentd schema says why it cannot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from kubelogs.store import ECS_LAYOUT, FLUENTD_LAYOUT, StoreReader, StoreWriter
from kubelogs.ui.backend import PAGE, StoreBackend
from kubelogs.ui.server import make_app
from support.store_docs import groups_of, make_batches
from support.ui_pages import T0, pages, tie_pattern, tied


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~1,600 events over 3 containers, 9 of every 10 at one of two nanoseconds (a tie
    of ~700 each, across many blocks), the rest spread over 40 others."""
    path = tmp_path_factory.mktemp("ties") / "store"
    batches = tied(make_batches(seed=5, containers=3, lines=540, per_batch=90), tie_pattern())
    with StoreWriter(path, layout=ECS_LAYOUT, block_docs=128) as writer:
        writer.write(groups_of(batches))
    return path


@pytest.mark.parametrize("q", ["", "stream:stderr", "error or warn*"])
async def test_every_match_once_in_order_when_hundreds_share_a_nanosecond(
    store: Path, q: str
) -> None:
    got = await pages(StoreBackend(store), {"q": q, "range": "all"})
    with StoreReader(store) as reader:
        expected = [
            (str(h.time_ns), f"{h.block}.{h.row}") for h in reversed(reader.search(q, limit=0))
        ]
    biggest_tie = max(sum(1 for t, _ in expected if t == str(T0 + n)) for n in (5, 9))

    assert expected == [(h["t"], h["id"]) for page in got for h in page]
    assert all(PAGE == len(page) for page in got[:-1])
    # The whole store: ties longer than a page and the old cursor's slack of 64.
    assert biggest_tie > PAGE + 64 or q


async def test_context_on_a_fluentd_store_is_the_lines_around_in_the_container(
    tmp_path: Path,
) -> None:
    """Fluentd documents have no file path or offset: the store gives the lines of the
    same container around the line, in its order (time, block, row), ties included."""
    path = tmp_path / "store"
    batches = tied(make_batches(seed=2, containers=3, lines=200, per_batch=50), tie_pattern())
    with StoreWriter(path, layout=FLUENTD_LAYOUT, block_docs=64) as writer:
        writer.write(groups_of(batches, "fluentd"))
    ctx = batches[0].ctx
    same = (
        f'kubernetes.namespace_name:"{ctx.namespace}" and kubernetes.pod_name:"{ctx.pod}" '
        f'and kubernetes.container_name:"{ctx.container}"'
    )
    with StoreReader(path) as reader:
        lines = [(str(h.time_ns), f"{h.block}.{h.row}") for h in reader.search(same, limit=0)]
    k = len(lines) // 2
    server = TestServer(make_app(StoreBackend(path), None), host="127.0.0.1")
    client: TestClient[Any, Any] = TestClient(server)
    await client.start_server()
    try:
        r = await client.get("/api/context", params={"id": lines[k][1], "t": lines[k][0]})
        body = await r.json()
        gone = await client.get("/api/context", params={"id": "1.99999", "t": lines[k][0]})
        bad = await client.get("/api/context", params={"t": lines[k][0]})
        bad_body = await bad.json()
    finally:
        await client.close()

    assert 200 == r.status, body
    shown = body["lines"]
    assert [lines[k]] == [(x["t"], x["id"]) for x in shown if x["current"]]
    assert lines[k - 50 : k + 51] == [(x["t"], x["id"]) for x in shown]
    assert {ctx.container} == {x["doc"]["kubernetes"]["container_name"] for x in shown}
    assert len({x["t"] for x in shown}) < len(shown)  # ties inside the context
    assert 400 == gone.status
    assert 400 == bad.status
    assert "path and offset, or id" in bad_body["error"]
