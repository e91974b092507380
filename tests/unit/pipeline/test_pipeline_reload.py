"""The reload supervisor in-process: fallback when a new config cannot be built, no stale
gauges after a reload, and a stop requested while a reload is pending."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kubelogs.config.loader import Config, config_from_data
from kubelogs.pipeline.reload import Supervisor
from kubelogs.sinks.file import FileSinkConfig
from kubelogs.telemetry.metrics import Metrics


def make(tmp: Path, out: str, **root: Any) -> Config:
    log = tmp / "app.log"
    log.touch()
    data = {
        "data_dir": str(tmp / "data"),
        "api": {"enabled": False},
        "sources": {"logs": {"type": "file", "paths": [str(log)], "poll_interval": "20ms"}},
        "sinks": {"out": {"type": "file", "inputs": ["logs"], "path": str(tmp / out)}},
        **root,
    }
    return config_from_data(data, "test.yaml")


async def until(cond: Any, what: str) -> None:
    for _ in range(1000):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_config_that_cannot_be_built_falls_back_to_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_build = FileSinkConfig.build

    def build(self: FileSinkConfig, cx: Any) -> Any:
        if self.path.name == "broken.ndjson":
            raise OSError("cannot open broken.ndjson")
        return real_build(self, cx)

    monkeypatch.setattr(FileSinkConfig, "build", build)
    first = make(tmp_path, "out.ndjson")
    # a new summary interval makes it a whole-pipeline restart (test_pipeline_swap.py
    # has the partial one)
    configs = [make(tmp_path, "broken.ndjson", log={"summary_interval": "61s"})]
    sup = Supervisor(first, lambda: configs[0], metrics=Metrics())
    task = asyncio.create_task(sup.run())
    await until(lambda: sup.ready, "the first pipeline")
    old = sup.pipeline
    sup.request_reload()
    await until(lambda: sup.pipeline is not old and sup.ready, "the restarted pipeline")
    assert sup.config is first
    assert sup.reloads == 0
    assert "reload failed, the previous configuration is started again" in caplog.text
    (tmp_path / "app.log").write_text("still here\n")
    await until(lambda: (tmp_path / "out.ndjson").exists(), "the old sink's file")
    await until(lambda: b"still here" in (tmp_path / "out.ndjson").read_bytes(), "the line")
    sup.request_stop()
    await task


async def test_a_reload_leaves_no_gauges_of_the_replaced_pipeline(tmp_path: Path) -> None:
    metrics = Metrics()
    n = [0]

    def load() -> Config:
        n[0] += 1
        return make(tmp_path, "out.ndjson", log={"summary_interval": f"{60 + n[0]}s"})

    sup = Supervisor(make(tmp_path, "out.ndjson"), load, metrics=metrics)
    task = asyncio.create_task(sup.run())
    await until(lambda: sup.ready, "the first pipeline")
    collectors = len(metrics.collectors)
    for i in range(1, 4):
        sup.request_reload()
        await until(lambda i=i: sup.reloads == i and sup.ready, f"reload {i}")
    assert len(metrics.collectors) == collectors
    text = metrics.render().decode()
    assert text.count('kubelogs_channel_events{component_id="out"}') == 1
    sup.request_stop()
    await task


async def test_stop_requested_while_the_pipeline_runs_ends_run(tmp_path: Path) -> None:
    sup = Supervisor(make(tmp_path, "out.ndjson"), lambda: make(tmp_path, "x"), metrics=Metrics())
    task = asyncio.create_task(sup.run())
    await until(lambda: sup.ready, "the first pipeline")
    sup.request_reload()
    sup.request_stop()
    pipeline = await task
    assert pipeline.ready is False
    assert sup.reloads == 0


async def test_a_change_that_touches_no_component_restarts_nothing(tmp_path: Path) -> None:
    applied: list[Config] = []
    new = make(tmp_path, "out.ndjson", shutdown_grace_period="5s", log={"level": "debug"})
    sup = Supervisor(
        make(tmp_path, "out.ndjson"), lambda: new, metrics=Metrics(), on_settings=applied.append
    )
    task = asyncio.create_task(sup.run())
    await until(lambda: sup.ready, "the first pipeline")
    running = sup.pipeline
    sup.request_reload()
    await until(lambda: sup.reloads == 1, "the reload")
    assert sup.pipeline is running
    assert running is not None
    assert running.config is new  # its grace period is read from here at stop time
    assert applied == [new]
    sup.request_stop()
    await task
