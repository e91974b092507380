"""The live tail of `kubelogs ui --es` on a real Elasticsearch node (issue 16): a line
stored after a poll with exactly the nanosecond of the last line that poll sent still
comes, once, also after a reconnect (the position as the SSE event id)."""

from __future__ import annotations

from typing import Any

import msgspec
from es_helpers import unique_index

from kubelogs.store import parse_query
from kubelogs.ui.es_backend import EsBackend, TailCursor
from kubelogs.ui.timerange import parse_range
from support.es_docs import load_batches
from support.es_servers import SearchServer
from support.store_docs import make_batches
from support.ui_pages import T0, tied


def _poll(backend: EsBackend, position: Any) -> tuple[list[dict[str, Any]], Any]:
    data, position = backend.tail_poll(parse_query(""), parse_range({"range": "all"}), position)
    return ([] if data is None else msgspec.json.decode(data)), position


def test_a_line_stored_later_at_the_last_sent_nanosecond_still_comes(
    elasticsearch: SearchServer,
) -> None:
    index = unique_index("tail-ties")
    first, later = make_batches(seed=11, containers=1, lines=20, per_batch=10)
    # the first poll ends at T0+100; the line stored after it shares that nanosecond
    first = tied([first], [10, 20, 30, 40, 50, 60, 70, 80, 100, 100])[0]
    later = tied([later], [100, 100, 100, 150, 150, 150, 150, 150, 150, 200])[0]
    load_batches(elasticsearch, index, [first])
    backend = EsBackend(elasticsearch.url, index)

    got, position = _poll(backend, (T0, frozenset()))
    assert 10 == len(got)
    assert (T0 + 100, 2) == (position[0], len(position[1]))
    assert ([], position) == _poll(backend, position)  # nothing new: nothing again

    load_batches(elasticsearch, index, [later], create=False)
    # a reconnecting page sends the last event id: the same position
    resumed = TailCursor.parse(TailCursor.text(position))
    assert resumed == position
    again, position = _poll(backend, resumed)

    sent = {f"{first.ctx.id_prefix}-{o:x}" for o in first.offsets}
    expected = {f"{later.ctx.id_prefix}-{o:x}" for o in later.offsets}
    assert expected == {h["id"] for h in again}
    assert 10 == len(again)  # each once, none of the first poll's
    assert not sent & {h["id"] for h in again}
    assert [str(T0 + 100)] * 3 == [h["t"] for h in again[:3]]
    assert ([], position) == _poll(backend, position)


def test_a_poll_cut_by_its_size_resumes_inside_the_nanosecond(
    elasticsearch: SearchServer, monkeypatch: Any
) -> None:
    from kubelogs.ui import es_backend

    monkeypatch.setattr(es_backend, "_TAIL_SIZE", 4)
    index = unique_index("tail-cut")
    (batch,) = make_batches(seed=12, containers=1, lines=10, per_batch=10)
    load_batches(elasticsearch, index, tied([batch], [7] * 9 + [8]))
    backend = EsBackend(elasticsearch.url, index)

    position: Any = (T0, frozenset())
    got: list[dict[str, Any]] = []
    for _ in range(10):
        page, position = _poll(backend, position)
        got += page
    assert 10 == len(got) == len({h["id"] for h in got})
    assert [str(T0 + 7)] * 9 + [str(T0 + 8)] == [h["t"] for h in got]


def test_positions_as_event_ids() -> None:
    assert (5, frozenset()) == TailCursor.parse("5")
    assert (5, frozenset({"a-1", "b~2"})) == TailCursor.parse(
        TailCursor.text((5, frozenset({"a-1", "b~2"})))
    )
    many = frozenset(f"p-{i:x}" for i in range(TailCursor.MAX_IDS + 1))
    assert "6" == TailCursor.text((5, many))  # a header stays small
    assert None is TailCursor.parse("x") is TailCursor.parse("5~!!")


async def test_the_stream_resumes_inside_the_nanosecond_from_its_last_event_id(
    elasticsearch: SearchServer,
) -> None:
    """Through `/api/tail`: the event id names the nanosecond and the ids sent at it, and
    a reconnect with it as ``Last-Event-ID`` gets the line stored later at that time."""
    from aiohttp.test_utils import TestClient, TestServer

    from kubelogs.ui.server import make_app

    index = unique_index("tail-sse")
    first, later = make_batches(seed=13, containers=1, lines=4, per_batch=2)
    load_batches(elasticsearch, index, tied([first], [50, 60]))
    client: TestClient[Any, Any] = TestClient(
        TestServer(make_app(EsBackend(elasticsearch.url, index), None), host="127.0.0.1")
    )
    await client.start_server()

    async def next_event(headers: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
        stream = await client.get("/api/tail", params={"range": "all"}, headers=headers)
        event_id = ""
        try:
            while True:
                line = (await stream.content.readline()).decode()
                if line.startswith("id: "):
                    event_id = line[4:].strip()
                elif line.startswith("data: "):
                    return event_id, msgspec.json.decode(line[6:])
        finally:
            stream.close()

    try:
        event_id, got = await next_event({"Last-Event-ID": str(T0)})
        load_batches(elasticsearch, index, tied([later], [60, 70]), create=False)
        _, again = await next_event({"Last-Event-ID": event_id})
    finally:
        await client.close()

    assert [str(T0 + 50), str(T0 + 60)] == [h["t"] for h in got]
    assert event_id.startswith(f"{T0 + 60}~")
    assert [f"{later.ctx.id_prefix}-{o:x}" for o in later.offsets] == [h["id"] for h in again]
