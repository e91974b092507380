"""Session fixture: one real Kafka 4.1 broker (KRaft), shared by every Kafka test.

It starts at most once per session, on free loopback ports, the first time a test asks
for it (a run of unrelated tests starts nothing), and stops by its own pid at the end.
Tests that restart or stop it (`broker.stop()`, `broker.start()`) leave it running.
Under ``CI=true`` a broker that cannot start fails the tests that need it; elsewhere they
are skipped with the reason (no JDK, no Maven, no network to Maven Central).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.jvm_server import start_or_skip
from support.kafka_broker import KafkaBroker

STARTUP: list[float] = []


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    base = tmp_path_factory.mktemp("kafka")
    broker = start_or_skip(KafkaBroker(home=base / "home", log_path=base / "kafka.log"))
    STARTUP.append(broker.startup_seconds)
    yield broker
    broker.stop()


@pytest.fixture
def broker(kafka_broker: KafkaBroker) -> KafkaBroker:
    """The session's broker, started again if a previous test left it stopped."""
    if not kafka_broker.running:
        kafka_broker.start()
    return kafka_broker


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if STARTUP:
        times = ", ".join(f"{t:.1f}s" for t in STARTUP)
        terminalreporter.write_line(f"kafka broker started in: {times}")
