"""`kubelogs ui` in a real browser over a local store of the fluentd schema: the message
column shows `log`, and "show context" (no file path or offset in those documents) lists
the lines around the hit in its container, the hit in the middle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect
from ui_helpers import open_page, wait_total

from kubelogs.store import FLUENTD_LAYOUT, StoreReader, StoreWriter
from support.store_docs import groups_of, make_batches


def test_show_context_on_a_fluentd_store_lists_the_container_lines(
    page: Page,
    watched: dict[str, Any],
    ui_server_factory: Any,
    tmp_path: Path,
    artifacts: Path,
) -> None:
    store = tmp_path / "store"
    batches = make_batches(seed=4, containers=2, lines=300, per_batch=100)
    with StoreWriter(store, layout=FLUENTD_LAYOUT, block_docs=128) as writer:
        writer.write(groups_of(batches, "fluentd"))
    ctx = batches[0].ctx
    q = f"kubernetes.pod_name:{ctx.pod} and kubernetes.container_name:{ctx.container}"
    with StoreReader(store) as reader:
        hits = reader.search(q, limit=0)
    messages = {h.doc: json.loads(h.doc)["log"] for h in hits}
    newest_first = [messages[h.doc] for h in reversed(hits)]
    server = ui_server_factory(store)

    open_page(page, f"{server.url}?range=all&q={q}")
    wait_total(page, len(hits))
    assert newest_first[:200] == page.locator("#results .row .msg").all_text_contents()
    row = page.locator("#results .row").nth(120)
    row.locator(".line").click()
    row.locator("button.context").click()
    current = page.locator("#context-lines .context-line.current .msg")
    expect(current).to_have_text(newest_first[120])
    page.screenshot(path=str(artifacts / "fluentd-store-context.png"))

    k = len(hits) - 1 - 120  # oldest first
    expected = [messages[h.doc] for h in hits[k - 50 : k + 51]]
    assert expected == page.locator("#context-lines .context-line .msg").all_text_contents()
    title = page.locator("#context-title").text_content() or ""
    assert f"container {ctx.namespace}/{ctx.pod}/{ctx.container}" in title
