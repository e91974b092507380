"""`kubelogs ui`'s HTTP API over a real store: pages newest first, aggregations, query
errors with their caret, the time range rule, security headers, token and Host checks,
read-only routes, and the command's refusal to serve the network without a token."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from kubelogs.store import ECS_LAYOUT, StoreReader, StoreWriter
from kubelogs.ui.backend import StoreBackend
from kubelogs.ui.security import COOKIE
from kubelogs.ui.server import make_app
from kubelogs.ui.timerange import TimeRange, parse_range, shift_to_data
from support.store_docs import make_dataset

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ui") / "store"
    dataset = make_dataset(seed=7, containers=4, lines=1200, per_batch=150)
    with StoreWriter(path, layout=ECS_LAYOUT, block_docs=400) as writer:
        writer.write(dataset.groups)
    return path


async def client_for(store: Path, token: str | None = None) -> TestClient[Any, Any]:
    server = TestServer(make_app(StoreBackend(store), token), host="127.0.0.1")
    client: TestClient[Any, Any] = TestClient(server)
    await client.start_server()
    return client


async def test_pages_are_newest_first_and_cover_every_match_once(store: Path) -> None:
    client = await client_for(store)
    try:
        seen: list[tuple[str, str]] = []
        params = {"q": "stream:stderr", "range": "all"}
        r = await client.get("/api/search", params=params)
        assert 200 == r.status
        body = await r.json()
        seen += [(h["t"], h["id"]) for h in body["hits"]]
        while body["next"]:
            r = await client.get("/api/search", params={**params, "before": body["next"]})
            body = await r.json()
            seen += [(h["t"], h["id"]) for h in body["hits"]]
    finally:
        await client.close()
    with StoreReader(store) as reader:
        expected = [
            (str(h.time_ns), f"{h.block}.{h.row}") for h in reader.search("stream:stderr", limit=0)
        ]

    assert list(reversed(expected)) == seen
    assert len(seen) > 200  # more than one page


async def test_aggregate_agrees_with_count(store: Path) -> None:
    client = await client_for(store)
    try:
        r = await client.get(
            "/api/aggregate",
            params={"q": "error", "range": "all", "top": "kubernetes.namespace,stream"},
        )
        body = await r.json()
    finally:
        await client.close()
    with StoreReader(store) as reader:
        total = reader.count("error")

    assert 200 == r.status
    assert total == body["total"] == sum(body["counts"])
    assert total == sum(n for _, n in body["top"]["stream"])
    assert 48 <= len(body["counts"]) <= 120


async def test_a_query_error_answers_400_with_the_cli_caret(store: Path) -> None:
    client = await client_for(store)
    try:
        r = await client.get("/api/search", params={"q": "level:(", "range": "all"})
        body = await r.json()
    finally:
        await client.close()

    assert 400 == r.status
    assert 7 == body["column"]
    assert "level:(\n      ^" == body["caret"]
    assert body["error"].startswith("invalid query:")


async def test_every_answer_carries_the_security_headers(store: Path) -> None:
    client = await client_for(store)
    try:
        answers = [
            await client.get("/"),
            await client.get("/static/app.js"),
            await client.get("/api/info"),
            await client.get("/api/search", params={"q": "a:("}),
            await client.get("/static/../backend.py"),
        ]
    finally:
        await client.close()

    for r in answers:
        csp = r.headers["Content-Security-Policy"]
        script_src = next(p for p in csp.split(";") if p.strip().startswith("script-src"))
        assert "script-src 'self'" == script_src.strip()
        assert "unsafe" not in csp
        assert "nosniff" == r.headers["X-Content-Type-Options"]
        assert "no-referrer" == r.headers["Referrer-Policy"]
    assert 404 == answers[-1].status


async def test_nothing_can_be_changed_through_the_ui(store: Path) -> None:
    client = await client_for(store)
    try:
        statuses = [
            (await client.request(method, path)).status
            for method in ("POST", "PUT", "DELETE", "PATCH")
            for path in ("/", "/api/search", "/api/tail")
        ]
    finally:
        await client.close()

    assert {405} == set(statuses)


async def test_the_token_is_checked_on_every_route(store: Path) -> None:
    client = await client_for(store, TOKEN)
    try:
        bare = {
            p: (await client.get(p)).status
            for p in ("/", "/api/info", "/api/tail", "/static/app.js")
        }
        wrong = await client.get("/api/info", headers={"Authorization": "Bearer nope-nope-nope"})
        bearer = await client.get("/api/info", headers={"Authorization": f"Bearer {TOKEN}"})
        bad_query_token = await client.get("/", params={"token": "nope"}, allow_redirects=False)
        first = await client.get("/", params={"token": TOKEN, "q": "error"}, allow_redirects=False)
        cookie = first.cookies[COOKIE]
        with_cookie = await client.get("/api/info")  # the client keeps the cookie
    finally:
        await client.close()

    assert {401} == set(bare.values())
    assert 401 == wrong.status
    assert 200 == bearer.status
    assert 401 == bad_query_token.status
    assert 303 == first.status
    assert "/?q=error" == first.headers["Location"]
    assert TOKEN == cookie.value
    assert cookie["httponly"]
    assert "Strict" == cookie["samesite"]
    assert 200 == with_cookie.status


async def test_without_a_token_only_loopback_host_names_are_served(store: Path) -> None:
    client = await client_for(store)
    try:
        rebinding = await client.get("/api/info", headers={"Host": "evil.example:8080"})
        local = await client.get("/api/info", headers={"Host": "localhost:8080"})
        loopback = await client.get("/api/info", headers={"Host": "127.0.0.2:8080"})
        v6 = await client.get("/api/info", headers={"Host": "[::1]:8080"})
    finally:
        await client.close()

    assert 403 == rebinding.status
    assert [200, 200, 200] == [local.status, loopback.status, v6.status]


def test_a_recent_range_without_data_moves_to_the_newest_event() -> None:
    now = 10_000 * 10**9
    r = parse_range({"range": "15m"}, now_ns=now)
    newest = now - 3600 * 10**9

    moved = shift_to_data(r, newest)

    assert TimeRange(newest - 900 * 10**9, newest, 900 * 10**9, shifted=True) == moved
    assert r == shift_to_data(r, now - 60 * 10**9)  # data in range: unchanged


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"range": "15"}, "range='15'"),
        ({"from": "yesterday"}, "from='yesterday'"),
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from is after to"),
    ],
)
def test_bad_ranges_name_the_parameter(params: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_range(params)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--listen", "0.0.0.0:0"], "set --auth-token T (or $KUBELOGS_UI_TOKEN)"),
        (["--listen", "localhost"], "--listen 'localhost' has no port"),
        (["--auth-token", "short"], "--auth-token: use at least 8 characters"),
        (["--index", "logs-*"], "--index needs --es URL"),
    ],
)
def test_bad_arguments_are_one_line_errors(store: Path, argv: list[str], message: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "kubelogs", "ui", "--store", str(store), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "KUBELOGS_UI_TOKEN": ""},
    )

    assert 1 == r.returncode
    assert 1 == len(r.stderr.strip().splitlines()), r.stderr
    assert r.stderr.startswith("kubelogs ui: ")
    assert message in r.stderr


def test_a_missing_store_is_a_one_line_error(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "kubelogs", "ui", "--store", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert 1 == r.returncode
    assert f"kubelogs ui: no store at {tmp_path / 'none'}" in r.stderr
    assert 1 == len(r.stderr.strip().splitlines())


def test_c_opens_the_store_of_the_config_or_says_why_not(tmp_path: Path) -> None:
    def ui(config: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kubelogs", "ui", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    local = tmp_path / "local.yaml"
    local.write_text(
        "sources: {c: {type: kubernetes_logs}}\n"
        f"sinks: {{s: {{type: local, path: {tmp_path / 'st'}, inputs: [c]}}}}\n"
    )
    other = tmp_path / "other.yaml"
    other.write_text(
        "sources: {c: {type: kubernetes_logs}}\nsinks: {s: {type: stdout, inputs: [c]}}\n"
    )

    found, none = ui(local), ui(other)

    assert 1 == found.returncode == none.returncode
    assert found.stderr.startswith(f"kubelogs ui: no store at {tmp_path / 'st'} ")
    assert none.stderr == f"kubelogs ui: {other} has no sink of type local " + (
        "(search its sink's own store instead)\n"
    )


def test_static_files_are_in_the_wheel() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    packages = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    static = Path(__file__).parents[3] / "src/kubelogs/ui/static"

    assert "src/kubelogs" in packages  # hatch ships every file of the package directory
    assert {"index.html", "app.js", "text.js", "histogram.js", "style.css"} <= {
        p.name for p in static.iterdir()
    }
    assert msgspec  # the API's encoder


async def test_the_live_stream_sends_new_matches_and_resumes_after_its_last_event(
    tmp_path: Path,
) -> None:
    dataset = make_dataset(seed=8, containers=2, lines=400, per_batch=100)
    half = len(dataset.groups) // 2
    path = tmp_path / "store"
    with StoreWriter(path, layout=ECS_LAYOUT, block_docs=100) as writer:
        writer.write(dataset.groups[:half])
    client = await client_for(path)
    try:
        first = await (await client.get("/api/search", params={"range": "all"})).json()
        stream = await client.get("/api/tail", params={"range": "all", "after": first["position"]})
        assert "text/event-stream" == stream.headers["Content-Type"]
        with StoreWriter(path, layout=ECS_LAYOUT, block_docs=100) as writer:
            writer.write(dataset.groups[half:])
        expected = sum(len(g.messages or ()) for g in dataset.groups[half:])
        got: list[Any] = []
        last_id = ""
        while len(got) < expected:
            line = (await stream.content.readline()).decode()
            if line.startswith("id: "):
                last_id = line[4:].strip()
            elif line.startswith("data: "):
                got += msgspec.json.decode(line[6:])
        stream.close()
        # A reconnect carries the last id it got; here the first page's position, so
        # the second half comes again (without the header it would start now: nothing).
        resumed = await client.get(
            "/api/tail", params={"range": "all"}, headers={"Last-Event-ID": str(first["position"])}
        )
        again: list[Any] = []
        while len(again) < expected:
            line = (await resumed.content.readline()).decode()
            if line.startswith("data: "):
                again += msgspec.json.decode(line[6:])
        resumed.close()
    finally:
        await client.close()

    assert expected == len(got)
    assert expected == len({h["id"] for h in got})
    assert int(last_id) > first["position"]
    assert got == again


STATIC = Path(__file__).parents[3] / "src/kubelogs/ui/static"


def test_the_page_has_no_inline_script_handler_or_style() -> None:
    """What the CSP would block anyway must not be there: the page would break."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Check(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            names = dict(attrs)
            if tag == "script" and not names.get("src"):
                found.append("inline <script>")
            found.extend(f"{tag} {n}=" for n in names if n.startswith("on") or n == "style")

    Check().feed((STATIC / "index.html").read_text())

    assert [] == found


@pytest.mark.parametrize(
    "pattern", ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                "new Function", "setAttribute(\"on", "srcdoc"],
)  # fmt: skip
def test_the_scripts_never_turn_text_into_html(pattern: str) -> None:
    for script in STATIC.glob("*.js"):
        assert pattern not in script.read_text(), script.name


async def test_an_empty_store_answers_without_a_histogram(tmp_path: Path) -> None:
    StoreWriter(tmp_path / "empty", layout=ECS_LAYOUT).close()
    client = await client_for(tmp_path / "empty")
    try:
        r = await client.get("/api/aggregate", params={"range": "all", "top": "stream"})
        body = await r.json()
        page = await (await client.get("/api/search", params={"range": "all"})).json()
    finally:
        await client.close()

    assert 200 == r.status
    assert (0, [], []) == (body["total"], body["counts"], body["top"]["stream"])
    assert ([], None) == (page["hits"], page["next"])
