"""`pipeline.gc_pause`: the collector paused around a batch, and the agent's threshold."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from kubelogs.pipeline.gc_pause import AGENT_THRESHOLD, collector_tuned, gc_paused


@pytest.fixture
def thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


@pytest.mark.usefixtures("thresholds")
class TestCollectorTuned:
    def test_the_agent_threshold_inside_and_the_previous_one_after(self) -> None:
        gc.set_threshold(700, 10, 10)
        with collector_tuned():
            assert AGENT_THRESHOLD == gc.get_threshold()
        assert (700, 10, 10) == gc.get_threshold()

    def test_restored_after_an_exception(self) -> None:
        gc.set_threshold(500, 5, 5)
        with pytest.raises(RuntimeError), collector_tuned():
            raise RuntimeError("boom")
        assert (500, 5, 5) == gc.get_threshold()

    def test_a_higher_threshold_someone_chose_is_kept(self) -> None:
        gc.set_threshold(100_000, 20, 20)
        with collector_tuned():
            assert (100_000, 20, 20) == gc.get_threshold()
        assert (100_000, 20, 20) == gc.get_threshold()


class TestGcPaused:
    def test_off_inside_on_after(self) -> None:
        assert gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert gc.isenabled()

    def test_a_collector_turned_off_stays_off(self) -> None:
        gc.disable()
        try:
            with gc_paused():
                pass
            assert not gc.isenabled()
        finally:
            gc.enable()
