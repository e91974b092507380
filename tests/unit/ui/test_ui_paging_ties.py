"""Paging of `kubelogs ui` over the local store when many matches share one nanosecond:
every match comes exactly once, newest first, whatever the ties (the cursor is the
time, block and row of the last hit shown, not the time alone)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubelogs.store import ECS_LAYOUT, StoreReader, StoreWriter
from kubelogs.ui.backend import PAGE, StoreBackend
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
