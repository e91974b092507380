"""Session fixtures `opensearch` and `elasticsearch`: one real OpenSearch 2.19 and one
real Elasticsearch 8.19 node for the whole test session, whichever directory asks
(``tests/integration/elasticsearch`` and the browser tests of ``kubelogs ui --es`` in
``tests/ui`` share them: registered once, from ``tests/conftest.py``, so a run never
starts a second JVM of a flavour).

Each starts at most once per session, on free loopback ports, the first time a test asks
for it (a run of unrelated tests starts nothing), and stops by its own pid at the end.
Server logs are kept under the session's tmp dir (the path is in every failure message).
Under ``CI=true`` a node that cannot start fails the tests that need it; elsewhere they
are skipped with the reason (no JDK, no Maven, no network to Maven Central).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.es_servers import Flavour, SearchServer
from support.jvm_server import start_or_skip

STARTUP_TIMES: dict[str, float] = {}
"""Seconds each node took to become healthy, printed at the end of the session."""


def _start(flavour: Flavour, tmp: pytest.TempPathFactory) -> SearchServer:
    base = tmp.mktemp(flavour)
    server = SearchServer(flavour, home=base / "home", log_path=base / f"{flavour}.log")
    start_or_skip(server)
    STARTUP_TIMES[flavour] = server.startup_seconds
    return server


@pytest.fixture(scope="session")
def opensearch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SearchServer]:
    server = _start("opensearch", tmp_path_factory)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def elasticsearch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SearchServer]:
    server = _start("elasticsearch", tmp_path_factory)
    yield server
    server.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if STARTUP_TIMES:
        times = ", ".join(f"{k} {v:.1f}s" for k, v in sorted(STARTUP_TIMES.items()))
        terminalreporter.write_line(f"search servers started in: {times}")
