"""Helpers for tests of `kubelogs ui` paging: batches whose events share a few
nanoseconds, and every page of an `/api/search` through the real HTTP app."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from kubelogs.pipeline.event import Batch
from kubelogs.ui.server import make_app

T0 = 1_700_000_000_000_000_000


def tie_pattern() -> list[int]:
    """Nanoseconds after `T0` for events in write order (cycled): 9 of every 10 at
    T0+5 or T0+9, the others at 40 distinct times."""
    spread = iter(range(10, 50))
    base = [5, 5, 5, 5, 9, 9, 9, 9, 9, 0]
    return [p if p else next(spread) for p in base * 4]


def tied(batches: list[Batch], pattern: list[int], base: int = T0) -> list[Batch]:
    """The batches with their times replaced: event k (in write order) gets
    ``base + pattern[k % len(pattern)]``, so most events share a handful of nanoseconds."""
    out, k = [], 0
    for b in batches:
        times = []
        for _ in b.times:
            times.append(base + pattern[k % len(pattern)])
            k += 1
        out.append(
            Batch(b.ctx, times, list(b.messages), list(b.streams), list(b.offsets), b.fields)
        )
    return out


async def pages(backend: Any, params: dict[str, str]) -> list[list[dict[str, Any]]]:
    """Every page of ``/api/search`` with `params`, following ``next`` to the end."""
    server = TestServer(make_app(backend, None), host="127.0.0.1")
    client: TestClient[Any, Any] = TestClient(server)
    await client.start_server()
    out: list[list[dict[str, Any]]] = []
    try:
        body: dict[str, Any] = {"next": None}
        while True:
            extra = {"before": body["next"]} if body["next"] else {}
            r = await client.get("/api/search", params={**params, **extra})
            assert 200 == r.status, await r.text()
            body = await r.json()
            out.append(body["hits"])
            if not body["next"]:
                return out
            assert len(out) < 100, "paging does not end"
    finally:
        await client.close()
