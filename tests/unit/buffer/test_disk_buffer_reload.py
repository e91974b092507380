"""A configuration reload with a disk-buffered sink: the old pipeline's buffer is closed
(its lock released) before the new one opens the same directory, lines written across
reloads all arrive, and /metrics shows one series per buffer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from kubelogs.config.loader import Config, config_from_data
from kubelogs.pipeline.reload import Supervisor
from kubelogs.telemetry.metrics import Metrics
from support.waiting import until


def make(tmp: Path, interval: int) -> Config:
    log = tmp / "app.log"
    log.touch()
    data: dict[str, Any] = {
        "data_dir": str(tmp / "data"),
        "api": {"enabled": False},
        "log": {"summary_interval": f"{interval}s"},
        "sources": {"logs": {"type": "file", "paths": [str(log)], "poll_interval": "20ms"}},
        "sinks": {
            "out": {
                "type": "file",
                "inputs": ["logs"],
                "path": str(tmp / "out.ndjson"),
                "buffer": {"type": "disk", "max_size": "1MiB"},
            }
        },
    }
    return config_from_data(data, "test.yaml")


def delivered(tmp: Path) -> list[str]:
    out = tmp / "out.ndjson"
    if not out.exists():
        return []
    return [json.loads(x)["message"] for x in out.read_text().splitlines()]


async def test_reloads_with_a_disk_buffer(tmp_path: Path) -> None:
    metrics = Metrics()
    n = [0]

    def load() -> Config:
        n[0] += 1
        return make(tmp_path, 60 + n[0])

    sup = Supervisor(make(tmp_path, 60), load, metrics=metrics)
    task = asyncio.create_task(sup.run())
    await until(lambda: sup.ready, "the first pipeline")
    expected: list[str] = []
    for i in range(1, 4):
        with open(tmp_path / "app.log", "a") as f:
            f.write(f"before reload {i}\n")
        expected.append(f"before reload {i}")
        await until(lambda: len(delivered(tmp_path)) >= len(expected), f"line {i}")
        sup.request_reload()
        await until(lambda i=i: sup.reloads == i and sup.ready, f"reload {i}")
    with open(tmp_path / "app.log", "a") as f:
        f.write("after the reloads\n")
    expected.append("after the reloads")
    await until(lambda: len(delivered(tmp_path)) >= len(expected), "the last line")
    text = metrics.render().decode()
    sup.request_stop()
    await task
    assert expected == delivered(tmp_path)
    assert 1 == text.count('kubelogs_buffer_bytes{component_id="out"}')
    assert 1 == text.count('kubelogs_buffer_events{component_id="out"}')


def test_memory_buffered_sinks_report_buffer_events_too(tmp_path: Path) -> None:
    """`kubelogs_buffer_events` (DESIGN.md) for a sink without a disk buffer: the events
    waiting in its input queue."""
    from kubelogs.pipeline.runner import build_pipeline

    data: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "api": {"enabled": False},
        "sources": {"logs": {"type": "file", "paths": [str(tmp_path / "x.log")]}},
        "sinks": {"out": {"type": "blackhole", "inputs": ["logs"]}},
    }
    metrics = Metrics()
    pipeline = build_pipeline(config_from_data(data, "test.yaml"), metrics)
    channel = pipeline.nodes["out"].channel
    assert channel is not None
    channel.events = 42  # as if 42 events waited
    assert 'kubelogs_buffer_events{component_id="out"} 42.0' in metrics.render().decode()
