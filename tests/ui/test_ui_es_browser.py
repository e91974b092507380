"""`kubelogs ui --es` in a real browser (chromium via Playwright) over a real
Elasticsearch 8 and OpenSearch 2 node (the session's, `support.es_fixtures`), filled with
the sink's own documents and mappings (`support.es_docs`): the total, the histogram
bars and the top values agree with the documents loaded; a query and a field value
filter; scrolling pages through every match exactly once, newest first, although 300 of
them share one nanosecond; "show context" shows the neighbours of a line in its file
(ECS documents) and, for the fluentd schema (no file or offset), in its container."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from ui_helpers import open_page, total_of, wait_total

from kubelogs.pipeline.event import Batch
from kubelogs.store import ECS_LAYOUT, StoreReader, StoreWriter
from support.es_docs import load_batches
from support.es_servers import SearchServer
from support.store_docs import groups_of, make_batches
from support.ui_pages import tied
from support.waiting import wait_for

TIED = 300
"""Lines of one container that share one nanosecond (more than a page and its slack)."""


@dataclass
class Loaded:
    batches: list[Batch]
    ecs_url: str
    fluentd_url: str

    @property
    def total(self) -> int:
        return sum(len(b) for b in self.batches)

    def count(self, **where: str) -> int:
        return sum(
            1
            for b in self.batches
            for s in b.streams
            if all((s if k == "stream" else getattr(b.ctx, k)) == v for k, v in where.items())
        )

    def top(self, field: str) -> list[tuple[str, int]]:
        counts: Counter[str] = Counter()
        for b in self.batches:
            for s in b.streams:
                counts[s if field == "stream" else getattr(b.ctx, field)] += 1
        return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]

    def neighbours(self, line: tuple[int, str, int], by: str) -> list[str]:
        """Messages of the 50 lines before and after `line` (time, id prefix, offset)
        in its file (`by` = "path") or container, in the explorer's order."""
        batch = next(b for b in self.batches if b.ctx.id_prefix == line[1])
        group = getattr(batch.ctx, by)
        rows = sorted(
            (t, b.ctx.id_prefix, off, m)
            for b in self.batches
            if getattr(b.ctx, by) == group
            for t, off, m in zip(b.times, b.offsets, b.messages, strict=True)
        )
        if by == "path":
            rows.sort(key=lambda r: r[2])
        k = next(i for i, r in enumerate(rows) if r[:3] == line)
        return [r[3] for r in rows[max(0, k - 50) : k + 51]]


@pytest.fixture(scope="module", params=["elasticsearch", "opensearch"])
def loaded(request: pytest.FixtureRequest, ui_server_factory: Any) -> Loaded:
    node: SearchServer = request.getfixturevalue(str(request.param))
    batches = make_batches(seed=21, containers=4, lines=250, per_batch=100)
    middle = sorted(t for b in batches for t in b.times)[len(batches) * 50]
    batches += tied(make_batches(seed=22, containers=1, lines=TIED, per_batch=100), [0], middle)
    tag = f"ui-browser-{request.param}-{id(batches):x}"
    for schema in ("ecs", "fluentd"):
        assert sum(len(b) for b in batches) == load_batches(
            node, f"{tag}-{schema}", batches, schema
        )
    ecs = ui_server_factory(node.url, "--index", f"{tag}-ecs")
    fluentd = ui_server_factory(node.url, "--index", f"{tag}-fluentd")
    return Loaded(batches, ecs.url, fluentd.url)


def bar_counts(page: Page) -> list[int]:
    titles = page.locator("#histogram svg rect.bar title").all_text_contents()
    return [int(t.rsplit(": ", 1)[1]) for t in titles]


def top_shown(page: Page, field: str) -> list[tuple[str, int]]:
    values = page.locator(f'.field[data-field="{field}"] li.value')
    return [
        (
            v.locator(".value-text").text_content() or "",
            int(v.locator(".count").text_content() or ""),
        )
        for v in values.all()
    ]


def test_search_histogram_and_top_values_agree_with_the_documents(
    page: Page, watched: dict[str, Any], loaded: Loaded, artifacts: Path
) -> None:
    open_page(page, loaded.ecs_url + "?range=all")

    assert loaded.total == total_of(page)
    expect(page.locator("#where")).to_contain_text("Elasticsearch")
    assert 48 <= len(bar_counts(page)) <= 120
    assert loaded.total == sum(bar_counts(page))
    assert loaded.top("namespace") == top_shown(page, "kubernetes.namespace")
    assert loaded.top("stream") == top_shown(page, "stream")
    page.screenshot(path=str(artifacts / "es-overview.png"))

    page.fill("#query", "stream:stderr")
    page.press("#query", "Enter")
    wait_total(page, loaded.count(stream="stderr"))
    assert loaded.count(stream="stderr") == sum(bar_counts(page))
    namespace = top_shown(page, "kubernetes.namespace")[0][0]
    page.locator('.field[data-field="kubernetes.namespace"] .value-text').first.click()
    expect(page.locator("#query")).to_have_value(
        f"stream:stderr and kubernetes.namespace:{namespace}"
    )
    wait_total(page, loaded.count(stream="stderr", namespace=namespace))
    messages = page.locator("#results .row .msg").all_text_contents()
    assert messages
    assert all(messages)


def test_scrolling_pages_through_every_match_once_though_hundreds_share_a_nanosecond(
    page: Page, watched: dict[str, Any], loaded: Loaded
) -> None:
    open_page(page, loaded.ecs_url + "?range=all")
    rows = page.locator("#results .row")
    assert 200 == rows.count()

    def scrolled_to_end() -> bool:
        page.mouse.wheel(0, 200_000)
        return page.locator("#end").is_visible()

    wait_for(scrolled_to_end, timeout=120, what="the last page")
    ids = rows.evaluate_all("rows => rows.map(r => r.dataset.id)")
    times = [int(t) for t in rows.evaluate_all("rows => rows.map(r => r.dataset.t)")]
    expected = {f"{b.ctx.id_prefix}-{off:x}" for b in loaded.batches for off in b.offsets}
    assert loaded.total == len(ids) == len(set(ids))
    assert expected == set(ids)
    assert times == sorted(times, reverse=True)
    assert max(Counter(times).values()) >= TIED


def open_context(page: Page) -> tuple[int, str, int]:
    """Expand the first row and show its context; (time, id prefix, offset) of it."""
    first = page.locator("#results .row").first
    first.locator(".line").click()
    first.locator("button.context").click()
    expect(page.locator("#context-lines .context-line.current")).to_have_count(1)
    t = int(first.get_attribute("data-t") or "")
    prefix, _, offset = (first.get_attribute("data-id") or "").rpartition("-")
    return t, prefix, int(offset, 16)


@pytest.mark.parametrize("schema", ["ecs", "fluentd"])
def test_show_context_lists_the_lines_around_in_its_file_or_container(
    page: Page, watched: dict[str, Any], loaded: Loaded, artifacts: Path, schema: str
) -> None:
    url = loaded.ecs_url if schema == "ecs" else loaded.fluentd_url
    namespace = loaded.top("namespace")[-1][0]
    field = "kubernetes.namespace" if schema == "ecs" else "kubernetes.namespace_name"
    open_page(page, f"{url}?range=all&q={field}:{namespace}")
    wait_total(page, loaded.count(namespace=namespace))
    line = open_context(page)

    shown = page.locator("#context-lines .context-line .msg").all_text_contents()
    current = page.locator("#context-lines .context-line.current .msg").text_content()
    expected = loaded.neighbours(line, "path" if schema == "ecs" else "container_id")
    page.screenshot(path=str(artifacts / f"es-context-{schema}.png"))
    assert expected == shown
    assert len(shown) > 1
    batch, message = next(
        (b, m)
        for b in loaded.batches
        for off, m in zip(b.offsets, b.messages, strict=True)
        if (b.ctx.id_prefix, off) == line[1:]
    )
    assert message == current
    title = page.locator("#context-title").text_content() or ""
    if schema == "fluentd":
        assert f"container {namespace}/{batch.ctx.pod}/{batch.ctx.container}" in title
        count = loaded.count(namespace=namespace)
        assert [(namespace, count)] == top_shown(page, "kubernetes.namespace_name")
    else:
        assert batch.ctx.path in title


def test_a_fluentd_index_searches_and_shows_its_log_field(
    page: Page, watched: dict[str, Any], loaded: Loaded, tmp_path: Path
) -> None:
    """The same documents in both schemas: a word finds as many lines in `log`
    (fluentd) as in `message` (ECS) and as the local store holding them finds."""
    with StoreWriter(tmp_path / "store", layout=ECS_LAYOUT) as writer:
        writer.write(groups_of(loaded.batches))
    with StoreReader(tmp_path / "store") as reader:
        expected = reader.count("error")
    for url in (loaded.ecs_url, loaded.fluentd_url):
        open_page(page, f"{url}?range=all&q=error")
        assert expected == total_of(page)
        first = page.locator("#results .row .msg").first.text_content() or ""
        assert "error" in first.lower()
    assert expected > 0
