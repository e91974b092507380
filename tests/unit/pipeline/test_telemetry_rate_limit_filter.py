"""`RateLimitFilter` (kubelogs.telemetry.logging): repeated warnings are rate-limited.

Kept here because this task may only add tests under codecs/config/pipeline/tailing;
it belongs in tests/unit/telemetry/.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from kubelogs.telemetry import logging as telemetry_logging
from kubelogs.telemetry.logging import ConsoleFormatter, JsonFormatter, RateLimitFilter


class FakeClock:
    """A monotonic clock the test moves by hand (virtual time, no sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(telemetry_logging.time, "monotonic", fake)
    return fake


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, Capture]]:
    log = logging.getLogger("kubelogs.tests.rate_limit")
    handler = Capture()
    handler.addFilter(RateLimitFilter(interval=10.0))
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.DEBUG)
    yield log, handler
    log.removeHandler(handler)
    log.propagate = True


def messages(handler: Capture) -> list[tuple[str, int]]:
    return [(r.getMessage(), getattr(r, "suppressed", 0)) for r in handler.records]


class TestRateLimitFilter:
    def test_repeats_within_the_interval_are_suppressed(
        self, clock: FakeClock, logger: tuple[logging.Logger, Capture]
    ) -> None:
        """The same warning template is written once per interval."""
        log, handler = logger

        for i in range(5):
            log.warning("cannot read %s", f"/var/log/{i}.log")
            clock.now += 1.0

        expected_messages = [("cannot read /var/log/0.log", 0)]
        assert expected_messages == messages(handler)

    def test_next_message_after_the_interval_reports_the_suppressed_count(
        self, clock: FakeClock, logger: tuple[logging.Logger, Capture]
    ) -> None:
        """The first repeat let through after the interval says how many were dropped."""
        log, handler = logger
        for _ in range(4):
            log.warning("es unreachable")
            clock.now += 2.0

        clock.now += 10.0
        log.warning("es unreachable")
        log.warning("es unreachable")
        clock.now += 10.0
        log.warning("es unreachable")

        expected_messages = [("es unreachable", 0), ("es unreachable", 3), ("es unreachable", 1)]
        assert expected_messages == messages(handler)

    def test_exactly_one_interval_later_the_message_passes(
        self, clock: FakeClock, logger: tuple[logging.Logger, Capture]
    ) -> None:
        """At `interval` seconds after the last written one, a repeat is written again."""
        log, handler = logger
        log.error("boom")
        clock.now += 9.999
        log.error("boom")
        clock.now += 0.001

        log.error("boom")

        expected_messages = [("boom", 0), ("boom", 1)]
        assert expected_messages == messages(handler)

    def test_different_templates_and_loggers_are_limited_separately(
        self, clock: FakeClock, logger: tuple[logging.Logger, Capture]
    ) -> None:
        """Suppression is per (logger, message template)."""
        log, handler = logger
        child = logging.getLogger("kubelogs.tests.rate_limit.child")

        log.warning("a")
        log.warning("b")
        child.warning("a")
        log.warning("a")

        expected_messages = [("a", 0), ("b", 0), ("a", 0)]
        assert expected_messages == messages(handler)

    def test_info_and_debug_are_never_limited(
        self, clock: FakeClock, logger: tuple[logging.Logger, Capture]
    ) -> None:
        """Only warnings and worse are rate-limited."""
        log, handler = logger

        for _ in range(3):
            log.info("tick")
            log.debug("tock")

        expected_messages = [("tick", 0), ("tock", 0)] * 3
        assert expected_messages == messages(handler)

    def test_formatters_show_the_suppressed_count(
        self, clock: FakeClock, logger: tuple[logging.Logger, Capture]
    ) -> None:
        """Console and JSON output both mention how many were suppressed."""
        log, handler = logger
        log.warning("flaky")
        log.warning("flaky")
        log.warning("flaky")
        clock.now += 60.0
        log.warning("flaky")
        record = handler.records[-1]

        console = ConsoleFormatter().format(record)
        json_line = JsonFormatter().format(record)

        assert console.endswith("flaky (2 similar messages suppressed)")
        expected = (2, "flaky", "warning")
        assert expected == (
            json.loads(json_line)["suppressed"],
            json.loads(json_line)["message"],
            json.loads(json_line)["level"],
        )
