"""`kubelogs sidecar` as a container runs it: files in a shared volume -> stdout (for the
node agent) or -> forward (to an aggregator), resuming after a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from support.store_probe import stored_count, stored_messages
from support.waiting import wait_for


class Lines:
    """Collects a child's stdout lines in a thread (the pipe never fills)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.lines: list[bytes] = []
        self._stream = stream
        self._t = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._t.start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            self.lines.append(line)

    def docs(self) -> list[dict[str, object]]:
        return [json.loads(x) for x in list(self.lines)]

    def join(self) -> None:
        self._t.join(30)
        self._stream.close()


def start(tmp: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubelogs",
            "sidecar",
            "--data-dir",
            str(tmp / "data"),
            "--api-listen",
            "127.0.0.1:0",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "NODE_NAME": "node-7"},
    )


def test_stdout_sidecar_streams_app_files_and_resumes_after_restart(tmp_path: Path) -> None:
    logs = tmp_path / "app-logs"
    logs.mkdir()
    (logs / "access.log").write_text("GET / 200\nGET /a 404\n")
    (logs / "error.log").write_text("boom\n")
    (logs / "ignored.txt").write_text("not matched\n")
    proc = start(tmp_path, "--path", str(logs / "*.log"), "--stdout")
    assert proc.stdout is not None
    out = Lines(proc.stdout)
    wait_for(lambda: len(out.lines) >= 3, timeout=60, what="the three lines")
    with open(logs / "access.log", "a") as f:
        f.write("GET /b 500\n")
    wait_for(lambda: len(out.lines) >= 4, timeout=60, what="an appended line")
    proc.send_signal(signal.SIGTERM)
    assert 0 == proc.wait(60)
    out.join()
    docs = out.docs()
    assert sorted(["GET / 200", "GET /a 404", "GET /b 500", "boom"]) == sorted(
        str(d["message"]) for d in docs
    )
    paths = {d["message"]: d["log"]["file"]["path"] for d in docs}  # type: ignore[index]
    assert str(logs / "error.log") == paths["boom"]
    assert {"name": "node-7"} == docs[0]["host"]

    # restarted: only what is new is printed (the checkpoint is in --data-dir)
    with open(logs / "error.log", "a") as f:
        f.write("after restart\n")
    proc = start(tmp_path, "--path", str(logs / "*.log"), "--stdout")
    assert proc.stdout is not None
    again = Lines(proc.stdout)
    wait_for(lambda: len(again.lines) >= 1, timeout=60, what="the new line")
    proc.send_signal(signal.SIGTERM)
    assert 0 == proc.wait(60)
    again.join()
    assert ["after restart"] == [d["message"] for d in again.docs()]


def test_print_config_and_usage_errors(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubelogs",
            "sidecar",
            "--path",
            "/var/log/app/*.log",
            "--forward",
            "aggregator:24224",
            "--print-config",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 0 == r.returncode, r.stderr
    assert "type: forward" in r.stdout
    assert "- aggregator:24224" in r.stdout
    assert "type: disk" in r.stdout
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubelogs",
            "sidecar",
            "--path",
            "x",
            "--stdout",
            "--forward",
            "a:1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 1 == r.returncode
    assert "not allowed with argument" in r.stderr
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubelogs",
            "sidecar",
            "--path",
            "x",
            "--forward",
            "a:1",
            "--forward",
            "aggregator",
            "--buffer-size",
            "12xb",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Named by the flags typed, not by the config keys they become (sinks.out.servers).
    assert 1 == r.returncode
    assert r.stderr.splitlines() == [
        "kubelogs sidecar: --buffer-size: '12xb' is not a size like 512MiB, 64KiB or 1GB",
        "kubelogs sidecar: --forward: 'aggregator' has no port; write host:port, like "
        "127.0.0.1:24231, 0.0.0.0:24231 or [::1]:24231",
    ]


def test_forward_sidecar_to_an_aggregator_store_exactly_once(tmp_path: Path) -> None:
    """sidecar --forward -> aggregator (`kubelogs run`: forward source -> local store):
    every line once, across a sidecar kill -9 and restart (event ids travel with the
    lines; the sidecar's disk buffer and checkpoints resume where they stopped)."""
    from support.agent import Agent, write_config
    from support.intake import free_port

    port = free_port()
    store = tmp_path / "store"
    cfg = write_config(
        tmp_path / "aggregator.yaml",
        {
            "data_dir": str(tmp_path / "agg-data"),
            "api": {"listen": "127.0.0.1:0"},
            "sources": {"agents": {"type": "forward", "address": f"127.0.0.1:{port}"}},
            "sinks": {
                "store": {
                    "type": "local",
                    "inputs": ["agents"],
                    "path": str(store),
                    "flush_interval": "100ms",
                }
            },
        },
    )

    logs = tmp_path / "app-logs"
    logs.mkdir()
    with open(logs / "app.log", "w") as f:
        f.writelines(f"first {i}\n" for i in range(2000))
    with Agent(cfg, tmp_path / "aggregator.log") as aggregator:
        aggregator.api_port  # noqa: B018 (waits until it listens)
        side = start(tmp_path, "--path", str(logs / "*.log"), "--forward", f"127.0.0.1:{port}")
        wait_for(lambda: stored_count(store) >= 500, timeout=90, what="first lines stored")
        side.kill()
        side.wait(30)
        assert side.stdout is not None
        side.stdout.close()
        with open(logs / "app.log", "a") as f:
            f.writelines(f"second {i}\n" for i in range(1000))
        side = start(tmp_path, "--path", str(logs / "*.log"), "--forward", f"127.0.0.1:{port}")
        wait_for(lambda: stored_count(store) >= 3000, timeout=90, what="every line stored")
        side.send_signal(signal.SIGTERM)
        assert 0 == side.wait(60)
        assert side.stdout is not None
        side.stdout.close()
        assert 0 == aggregator.stop(), aggregator.stderr()
    got = stored_messages(store)
    expected = [f"first {i}" for i in range(2000)] + [f"second {i}" for i in range(1000)]
    assert sorted(expected) == sorted(got)
