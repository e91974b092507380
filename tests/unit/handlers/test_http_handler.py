"""`HttpHandler` against a real `http` source: fields and ids arrive, retries through a
server that is down or overloaded lose nothing and (by event id) duplicate nothing, the
application is never blocked or raised into."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from kubelogs.handlers.http import HttpHandler
from support.intake import Intake, free_port
from support.waiting import wait_for


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    lg = logging.getLogger(f"test.http.{time.monotonic_ns()}")
    lg.propagate = False
    lg.setLevel(logging.DEBUG)
    yield lg
    for h in list(lg.handlers):
        lg.removeHandler(h)
        h.close()


def test_records_arrive_with_fields_ids_and_errors(logger: logging.Logger) -> None:
    with Intake(auth={"bearer_token": "t0k"}) as intake:
        handler = HttpHandler(f"http://127.0.0.1:{intake.port}/app", token="t0k")
        logger.addHandler(handler)
        logger.info("user %s logged in", "ann", extra={"user_id": 7, "tags": ["a"]})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("it failed")
        assert handler.flush(20)
        assert 2 == handler.acked
    assert ["user ann logged in", "it failed"] == intake.messages()
    first, second = intake.fields()
    assert 7 == first["user_id"]
    assert ["a"] == first["tags"]
    assert {"level": "INFO", "logger": logger.name} == first["log"]
    assert "ValueError" == second["error"]["type"]
    assert "boom" in second["error"]["stack_trace"]
    ids = intake.ids()
    assert 2 == len(set(ids))
    assert ids[0].endswith("-1")
    assert ids[1].endswith("-2")


def test_server_down_then_up_delivers_everything(logger: logging.Logger) -> None:
    port = free_port()
    handler = HttpHandler(f"http://127.0.0.1:{port}/", max_backoff=0.5)
    logger.addHandler(handler)
    for i in range(300):
        logger.info("early %d", i)
    wait_for(lambda: handler.errors > 0, what="a failed attempt")
    with Intake(port) as intake:
        assert handler.flush(30)
    assert [f"early {i}" for i in range(300)] == intake.messages()
    assert 0 == handler.dropped


def test_overloaded_server_503_then_everything_once_by_id(logger: logging.Logger) -> None:
    """Answers time out (503) while the pipeline holds the events; the handler resends
    the same records, whose ids let a store keep one copy each."""
    with Intake(ack_timeout="100ms", retry_after=1) as intake:
        intake.hold = True
        handler = HttpHandler(f"http://127.0.0.1:{intake.port}/", max_backoff=0.3)
        logger.addHandler(handler)
        for i in range(50):
            logger.warning("held %d", i)
        wait_for(lambda: handler.errors >= 2, what="503 answers")
        assert "503" in (handler.last_error or "")
        intake.hold = False
        assert handler.flush(30)
    ids = intake.ids()
    by_id = dict(zip(ids, intake.messages(), strict=True))
    assert 50 == len(by_id)
    assert {f"held {i}" for i in range(50)} == set(by_id.values())
    assert max(Counter(ids).values()) >= 2, "no resend happened: the test proved nothing"


def test_refused_for_good_is_dropped_and_reported(logger: logging.Logger) -> None:
    with Intake(auth={"bearer_token": "right"}) as intake:
        handler = HttpHandler(f"http://127.0.0.1:{intake.port}/", token="wrong")
        logger.addHandler(handler)
        logger.error("never accepted")
        assert handler.flush(20)
    assert 1 == handler.dropped
    assert "401" in (handler.last_error or "")
    assert [] == intake.messages()


def test_full_queue_drops_without_blocking(logger: logging.Logger) -> None:
    handler = HttpHandler(f"http://127.0.0.1:{free_port()}/", queue_size=10, max_backoff=5)
    logger.addHandler(handler)
    t0 = time.monotonic()
    for i in range(1000):
        logger.info("line %d", i)
    assert time.monotonic() - t0 < 5
    assert handler.dropped >= 990
    assert not handler.flush(0.2)
    handler.close(0.5)


def test_bad_url_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not an http:// or https:// URL"):
        HttpHandler("ftp://example")
