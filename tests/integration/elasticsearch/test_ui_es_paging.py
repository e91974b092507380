"""Paging of `kubelogs ui --es` when many matches share one nanosecond, on a real node
and with both document schemas the sink writes: every match comes exactly once, newest
first, and within one nanosecond in the same order on every page (file, then offset)."""

from __future__ import annotations

from typing import Any

import pytest
from es_helpers import unique_index

from kubelogs.codecs.document import Schema
from kubelogs.codecs.records import split_event_id
from kubelogs.codecs.timestamps import parse_rfc3339_ns
from kubelogs.ui import es_backend
from kubelogs.ui.backend import PAGE
from kubelogs.ui.es_backend import EsBackend
from support.es_docs import load_batches
from support.es_servers import SearchServer
from support.store_docs import make_batches
from support.ui_pages import T0, pages, tie_pattern, tied


def _order(hit: dict[str, Any]) -> tuple[int, str, int]:
    """Newest-first order of the explorer: time, then the file (the `_id`'s prefix) and
    the offset in it, both carried by the sink's `_id`."""
    split = split_event_id(hit["id"])
    assert split is not None, hit["id"]
    return int(hit["t"]), split[0], split[1]


@pytest.mark.parametrize("schema", ["ecs", "fluentd"])
@pytest.mark.parametrize("group", [es_backend._GROUP, 7])
async def test_every_match_once_in_order_when_hundreds_share_a_nanosecond(
    server: SearchServer, schema: Schema, group: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`group` 7: a nanosecond's matches are fetched by scrolling (more than 7)."""
    monkeypatch.setattr(es_backend, "_GROUP", group)
    index = unique_index(f"ties-{schema}")
    batches = tied(make_batches(seed=5, containers=3, lines=540, per_batch=90), tie_pattern())
    total = load_batches(server, index, batches, schema)
    stderr = sum(s == "stderr" for b in batches for s in b.streams)
    backend = EsBackend(server.url, index)

    everything = [h for page in await pages(backend, {"range": "all"}) for h in page]
    errors = [
        h for page in await pages(backend, {"q": "stream:stderr", "range": "all"}) for h in page
    ]
    got = await pages(backend, {"range": "all"})

    expected_ids = {f"{b.ctx.id_prefix}-{off:x}" for b in batches for off in b.offsets}
    biggest_tie = max(sum(1 for h in everything if h["t"] == str(T0 + n)) for n in (5, 9))
    assert biggest_tie > PAGE + 64
    assert total == len(expected_ids) == len(everything)
    assert expected_ids == {h["id"] for h in everything}
    assert everything == sorted(everything, key=_order, reverse=True)
    assert all(int(h["t"]) == parse_rfc3339_ns(h["doc"]["@timestamp"].encode()) for h in everything)
    assert stderr == len(errors) == len({h["id"] for h in errors})
    assert errors == sorted(errors, key=_order, reverse=True)
    assert all(PAGE == len(page) for page in got[:-1])
    assert everything == [h for page in got for h in page]  # the same pages every time
