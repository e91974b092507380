"""What the browser tests of `kubelogs ui` do to a page: open it and wait until it is
ready, read the total it shows, wait for a total, read the address's query."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Page, expect


def open_page(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=30_000)


def total_of(page: Page) -> int:
    expect(page.locator("#total")).not_to_have_attribute("data-total", "", timeout=30_000)
    return int(page.locator("#total").get_attribute("data-total") or "-1")


def wait_total(page: Page, expected: int) -> None:
    expect(page.locator("#total")).to_have_attribute("data-total", str(expected), timeout=30_000)


def query_of(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)
