"""Browser tests of `kubelogs ui`: Playwright driving Debian's chromium (never a
downloaded browser: `.ci/run` installs ``chromium`` with apt-get).

Under CI=true a missing browser fails the run; elsewhere those tests are skipped with
the reason. The browser's config and cache go to a temporary directory (XDG_*), so a
run leaves nothing in the home directory. Screenshots are kept under
``test-artifacts/ui/`` (ignored by git; ``KUBELOGS_TEST_ARTIFACTS`` moves it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from support.waiting import wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).parents[2]
UI_COMMAND = [sys.executable, "-m", "kubelogs", "ui"]


@pytest.fixture(scope="session")
def browser_type_launch_args(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Launch arguments: Debian's chromium, headless, its config and cache in a temp dir."""
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    xdg = tmp_path_factory.mktemp("xdg")
    os.environ["XDG_CONFIG_HOME"] = str(xdg / "config")
    os.environ["XDG_CACHE_HOME"] = str(xdg / "cache")
    return {"executable_path": CHROMIUM, "headless": True, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="module")
def browser(browser_type_launch_args: dict[str, Any]) -> Iterator[Browser]:
    """Playwright and the browser, started and stopped around each browser test module.

    Not pytest-playwright's fixtures: its `playwright` is session-wide, and the sync API
    keeps an asyncio event loop running in the main thread while it is started, so every
    later test that called ``asyncio.run()`` failed ("cannot be called from a running
    event loop": 93 unit tests in a full run); its hooks also wrapped every test of the
    suite and turned filtered warnings back into failures."""
    with sync_playwright() as pw:
        b = pw.chromium.launch(**browser_type_launch_args)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (cookies, permissions) and page per test."""
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    path = Path(os.environ.get("KUBELOGS_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "ui"
    path.mkdir(parents=True, exist_ok=True)
    return path


class UiServer:
    """`kubelogs ui` as a user runs it, on a free port; `url` is what it printed."""

    def __init__(self, store: Path | str, log: Path, *extra: str) -> None:
        """`store`: a store directory, or an Elasticsearch URL (then `extra` may hold
        ``--index PATTERN``)."""
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115 (closed in stop())
        where = ["--store", str(store)] if isinstance(store, Path) else ["--es", store]
        self.proc = subprocess.Popen(
            [*UI_COMMAND, *where, "--listen", "127.0.0.1:0", *extra],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "KUBELOGS_UI_TOKEN": ""},
        )

        def printed() -> str | None:
            m = re.search(r"on (http://127\.0\.0\.1:\d+/)", log.read_text())
            if m is None and self.proc.poll() is not None:
                raise AssertionError(f"kubelogs ui exited: {log.read_text()}")
            return m.group(1) if m else None

        self.url: str = wait_for(printed, timeout=60, what="kubelogs ui to listen")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self._out.close()


@pytest.fixture(scope="module")
def ui_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    servers: list[UiServer] = []

    def start(store: Path | str, *extra: str) -> UiServer:
        log = tmp_path_factory.mktemp("ui-log") / "ui.log"
        server = UiServer(store, log, *extra)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def watched(page: Page) -> Iterator[dict[str, Any]]:
    """The page, with every dialog and page error recorded (none may happen)."""
    seen: dict[str, Any] = {"dialogs": [], "errors": [], "console": []}

    def on_dialog(dialog: Any) -> None:
        seen["dialogs"].append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda exc: seen["errors"].append(str(exc)))
    # A CSP violation, a failed request or a script error is reported here.
    page.on(
        "console",
        lambda m: seen["console"].append(m.text) if m.type == "error" else None,
    )
    page.set_viewport_size({"width": 1400, "height": 900})
    yield seen
    assert [] == seen["dialogs"]
    assert [] == seen["errors"]
    assert [] == [m for m in seen["console"] if not expected_console(m)]


def expected_console(message: str) -> bool:
    """Console errors a test causes on purpose: the 400 of a query that does not parse,
    and the 401s of the token test."""
    return "400 (Bad Request)" in message or "401 (Unauthorized)" in message
