"""`kubelogs ui` in a real browser (chromium via Playwright) over a store that a real
agent fills from a generated node tree: counts agree with `kubelogs search --count`,
rows expand and show their context, field values filter, the histogram zooms, the live
tail follows an agent that writes (and pauses while the user scrolls), the address keeps
the state (back/forward), hostile log lines never run and show verbatim, and the token
guards every request."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from ui_helpers import open_page, query_of, total_of, wait_total

from kubelogs.codecs.document import format_timestamp
from support.agent import Agent, generate_tree, node_agent_config
from support.podlogs import PodLog
from support.waiting import wait_for

HOSTILE = [
    "<script>window.__pwned = 1</script>",
    '<img src=x onerror="window.__pwned = 2; alert(2)">',
    '<svg onload="window.__pwned = 3; alert(3)"><circle r=1></circle></svg>',
    'click <a href="javascript:window.__pwned = 4">me</a> javascript:alert(4)',
    "user \u202eexe.txt\u202c and \u2066isolate\u2069 done",
]
BIDI_SHOWN = "user ⟨U+202E⟩exe.txt⟨U+202C⟩ and ⟨U+2066⟩isolate⟨U+2069⟩ done"
TOKEN = "browser-test-token-123"


def search(store: Path, *args: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "kubelogs", "search", "--store", str(store), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 0 == r.returncode, r.stderr
    return r.stdout


def cli_count(store: Path, *args: str) -> int:
    return int(search(store, "--count", *args).strip())


def stored(store: Path) -> int:
    from kubelogs.store.errors import StoreError
    from kubelogs.store.reader import StoreReader

    if not (store / "index.sqlite").exists():
        return 0
    try:
        with StoreReader(store) as reader:
            return reader.count("")
    except StoreError:
        return 0


class World:
    def __init__(self, store: Path, live: PodLog, records: int) -> None:
        self.store, self.live, self.records = store, live, records


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("ui-browser")
    node = tmp / "node"
    records = int(generate_tree(node, lines=2500, containers=4, seed=11)["records"])
    hostile = PodLog(node, namespace="hostile", pod="evil-5f7d8-abcde")
    hostile.write(*HOSTILE)
    live = PodLog(node, namespace="live", pod="tail-5f7d8-abcde")
    live.ns = time.time_ns()
    store = tmp / "store"
    config = node_agent_config(
        tmp / "kubelogs.yaml",
        data_dir=tmp / "data",
        node=node,
        store=store,
    )
    total = records + len(HOSTILE)
    with Agent(config, tmp / "agent.log") as agent:
        wait_for(lambda: stored(store) >= total, timeout=120, what="the tree in the store")
        yield World(store, live, total)
        assert 0 == agent.stop()


@pytest.fixture(scope="module")
def server(world: World, ui_server_factory: Any) -> Any:
    return ui_server_factory(world.store)


def test_counts_agree_with_the_cli_and_back_forward_restores_them(
    page: Page, watched: dict[str, Any], server: Any, world: World, artifacts: Path
) -> None:
    open_page(page, server.url + "?range=all")
    assert cli_count(world.store) == total_of(page)
    assert 200 == page.locator("#results .row").count()

    page.fill("#query", "error and stream:stderr")
    page.press("#query", "Enter")
    expected = cli_count(world.store, "error and stream:stderr")
    wait_total(page, expected)
    assert ["error and stream:stderr"] == query_of(page)["q"]
    page.screenshot(path=str(artifacts / "query.png"), full_page=False)

    page.fill("#query", "kubernetes.namespace:hostile")
    page.press("#query", "Enter")
    wait_total(page, len(HOSTILE))
    page.go_back()
    wait_total(page, expected)
    expect(page.locator("#query")).to_have_value("error and stream:stderr")
    page.go_forward()
    wait_total(page, len(HOSTILE))


def test_the_default_range_shows_the_newest_data_and_says_so(
    page: Page, watched: dict[str, Any], server: Any, world: World
) -> None:
    """The tree's lines are from 2025: the last hour holds none of them, so the page
    shows the hour up to the newest event (the whole tree spans seconds) and says so."""
    open_page(page, server.url)

    expect(page.locator("#notice")).to_contain_text("showing the same span up to the newest")
    wait_total(page, cli_count(world.store))
    assert "range" not in query_of(page) or ["1h"] == query_of(page)["range"]


def test_a_syntax_error_is_shown_with_its_caret(
    page: Page, watched: dict[str, Any], server: Any, artifacts: Path
) -> None:
    open_page(page, server.url + "?range=all")
    page.fill("#query", "level:(")
    page.press("#query", "Enter")

    expect(page.locator("#query-error")).to_be_visible()
    assert "level:(\n      ^" == page.locator("#query-error-caret").text_content()
    assert "column 7" in (page.locator("#query-error-message").text_content() or "")
    page.screenshot(path=str(artifacts / "syntax-error.png"))


def test_a_row_expands_to_its_document_and_shows_its_context(
    page: Page, watched: dict[str, Any], server: Any, world: World, artifacts: Path
) -> None:
    open_page(page, server.url + "?range=all&q=error")
    newest = json.loads(search(world.store, "--limit", "1", "-o", "json", "error"))
    first = page.locator("#results .row").first
    first.locator(".line").click()

    shown = json.loads(first.locator("pre.json").text_content() or "")
    assert newest == shown
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    first.locator("button.copy").click()
    expect(first.locator("button.copy")).to_have_text("Copied")
    assert newest == json.loads(page.evaluate("navigator.clipboard.readText()"))
    first.locator("button.context").click()
    current = page.locator("#context-lines .context-line.current")
    expect(current).to_have_count(1)
    assert newest["message"] in (current.locator(".msg").text_content() or "")
    lines = page.locator("#context-lines .context-line")
    assert lines.count() > 1
    page.screenshot(path=str(artifacts / "context.png"))


def test_clicking_a_field_value_filters_on_it(
    page: Page, watched: dict[str, Any], server: Any, world: World
) -> None:
    open_page(page, server.url + "?range=all")
    field = page.locator('.field[data-field="kubernetes.namespace"]')
    value = field.locator(".value-text").first.text_content() or ""
    field.locator(".value-text").first.click()

    expect(page.locator("#query")).to_have_value(f"kubernetes.namespace:{value}")
    wait_total(page, cli_count(world.store, f"kubernetes.namespace:{value}"))

    page.locator('.field[data-field="stream"] .filter-out').first.click()
    q = page.locator("#query").input_value()
    assert q.startswith(f"kubernetes.namespace:{value} and not stream:")
    wait_total(page, cli_count(world.store, q))


def test_dragging_on_the_histogram_zooms_to_that_time(
    page: Page, watched: dict[str, Any], server: Any, world: World, artifacts: Path
) -> None:
    open_page(page, server.url + "?range=all")
    before = total_of(page)
    box = page.locator("#histogram svg").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
    page.mouse.up()

    page.wait_for_function("location.search.includes('from=')", timeout=30_000)
    params = query_of(page)
    since, until = int(params["from"][0]), int(params["to"][0])
    expected = cli_count(
        world.store, "--since", format_timestamp(since), "--until", format_timestamp(until)
    )
    wait_total(page, expected)
    assert 0 < expected < before
    page.screenshot(path=str(artifacts / "zoomed.png"))


def test_scrolling_loads_older_pages(page: Page, watched: dict[str, Any], server: Any) -> None:
    open_page(page, server.url + "?range=all")
    assert 200 == page.locator("#results .row").count()
    page.mouse.wheel(0, 200_000)
    wait_for(lambda: page.locator("#results .row").count() >= 400, timeout=30, what="a second page")
    times = page.locator("#results .row").evaluate_all("rows => rows.map(r => r.dataset.t)")
    assert [int(t) for t in times] == sorted((int(t) for t in times), reverse=True)


def test_hostile_lines_never_run_and_show_verbatim(
    page: Page, watched: dict[str, Any], server: Any, artifacts: Path
) -> None:
    open_page(page, server.url + "?range=all&q=kubernetes.namespace:hostile")
    wait_total(page, len(HOSTILE))
    rows = page.locator("#results .row")
    for k in range(rows.count()):
        rows.nth(k).locator(".line").click()
    page.locator("#query").focus()
    page.screenshot(path=str(artifacts / "hostile.png"), full_page=True)

    messages = rows.locator(".msg").all_text_contents()
    assert sorted([*HOSTILE[:4], BIDI_SHOWN]) == sorted(messages)
    assert 0 == page.locator("#results script, #results img, #results svg, #results a").count()
    assert None is page.evaluate("window.__pwned")
    json_text = " ".join(rows.locator("pre.json").all_text_contents())
    assert "⟨U+202E⟩" in json_text
    assert "\u202e" not in page.locator("#results").inner_text()


def test_keyboard_and_theme(
    page: Page, watched: dict[str, Any], server: Any, world: World, artifacts: Path
) -> None:
    open_page(page, server.url + "?range=all&q=error")
    page.locator("#total").click()
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "query"
    page.keyboard.press("Escape")
    expect(page.locator("#query")).to_have_value("")
    wait_total(page, cli_count(world.store))

    theme = page.evaluate("document.documentElement.dataset.theme")
    page.click("#theme")
    other = page.evaluate("document.documentElement.dataset.theme")
    assert {theme, other} == {"light", "dark"}
    page.screenshot(path=str(artifacts / f"theme-{other}.png"))
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    assert other == page.evaluate("document.documentElement.dataset.theme")


def test_live_tail_follows_the_agent_and_pauses_while_scrolled(
    page: Page, watched: dict[str, Any], server: Any, world: World, artifacts: Path
) -> None:
    open_page(page, server.url + "?range=all")
    page.click("#live")
    expect(page.locator("#live-status")).to_contain_text("following")

    world.live.write("live line one", "live line two")
    first_row = page.locator("#results .row").first
    expect(first_row.locator(".msg")).to_have_text("live line two", timeout=30_000)
    expect(page.locator("#results .row").nth(1).locator(".msg")).to_have_text("live line one")
    page.screenshot(path=str(artifacts / "live.png"))

    page.mouse.wheel(0, 3000)
    page.wait_for_function("window.scrollY > 100", timeout=30_000)
    world.live.write("live line while scrolled")
    expect(page.locator("#live-status")).to_contain_text("paused", timeout=30_000)
    assert 0 == page.locator("#results .msg", has_text="live line while scrolled").count()

    page.evaluate("window.scrollTo(0, 0)")
    expect(first_row.locator(".msg")).to_have_text("live line while scrolled", timeout=30_000)
    expect(page.locator("#live-status")).to_contain_text("following")


def test_the_token_guards_the_page_the_api_and_the_stream(
    page: Page, watched: dict[str, Any], world: World, ui_server_factory: Any, artifacts: Path
) -> None:
    guarded = ui_server_factory(world.store, "--auth-token", TOKEN)

    bare = page.goto(guarded.url)
    assert bare is not None
    assert 401 == bare.status
    api = page.request.get(guarded.url + "api/info")
    assert 401 == api.status
    bearer = page.request.get(
        guarded.url + "api/info", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert 200 == bearer.status

    open_page(page, guarded.url + f"?token={TOKEN}&range=all")
    assert "token" not in query_of(page)
    cookie = next(c for c in page.context.cookies() if c["name"] == "kubelogs_ui")
    assert cookie["httpOnly"]
    assert TOKEN == cookie["value"]
    assert cli_count(world.store) <= total_of(page)
    assert None is page.evaluate("document.cookie.includes('kubelogs_ui') || null")
    page.click("#live")
    expect(page.locator("#live-status")).to_contain_text("following")
    page.screenshot(path=str(artifacts / "token.png"))
