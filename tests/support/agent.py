"""Run `kubelogs run` as a subprocess, the way a user (or a DaemonSet) runs it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from support.waiting import wait_for

FAST_TAIL = {
    "glob_interval": "200ms",
    "poll_interval": "20ms",
    "rotate_wait": "500ms",
    "checkpoint_interval": "100ms",
}


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def node_agent_config(
    path: Path,
    *,
    data_dir: Path,
    node: Path,
    sinks: dict[str, Any] | None = None,
    store: Path | None = None,
    source: dict[str, Any] | None = None,
) -> Path:
    """The agent most end-to-end tests run: the container logs of a generated `node`
    tree (source `logs`, fast tailing, `source` merged in) into `sinks`, or else into a
    local store at `store` flushed every 100 ms (`sinks` may add keys to it: a
    `buffer`)."""
    src: dict[str, Any] = {
        "type": "kubernetes_logs",
        **FAST_TAIL,
        "include": [str(node / "var/log/containers/*.log")],
        **(source or {}),
    }
    if store is not None:
        local = {"type": "local", "inputs": ["logs"], "path": str(store), "flush_interval": "100ms"}
        sinks = {"store": {**local, **(sinks or {}).get("store", {})}}
    return write_config(
        path,
        {
            "data_dir": str(data_dir),
            "node_name": "node-test",
            "api": {"listen": "127.0.0.1:0"},
            "sources": {"logs": src},
            "sinks": sinks or {},
        },
    )


def tail_config(
    tmp: Path,
    *,
    include: list[str],
    out: Path,
    source_type: str = "kubernetes_logs",
    extra_source: dict[str, Any] | None = None,
    extra_root: dict[str, Any] | None = None,
) -> Path:
    src: dict[str, Any] = {"type": source_type, **FAST_TAIL}
    if source_type == "file":
        src["paths"] = include
    else:
        src["include"] = include
    src.update(extra_source or {})
    data: dict[str, Any] = {
        "data_dir": str(tmp / "data"),
        "node_name": "node-test",
        "api": {"listen": "127.0.0.1:0"},
        "shutdown_grace_period": "20s",
        "sources": {"logs": src},
        "sinks": {"out": {"type": "file", "inputs": ["logs"], "path": str(out)}},
    }
    data.update(extra_root or {})
    return write_config(tmp / "kubelogs.yaml", data)


class Agent:
    def __init__(self, config: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Agent:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in wait())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kubelogs", "run", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=self.env,
        )
        return self

    @property
    def api_port(self) -> int:
        def find() -> int | None:
            m = re.findall(r"API on 127\.0\.0\.1:(\d+)", self.log_path.read_text())
            return int(m[-1]) if m else None

        port = wait_for(find, timeout=30, what="the agent's API address in its log")
        assert port is not None
        return port

    def wait_ready(self) -> Agent:
        """Until /readyz answers 200: the first scan is done, later files are new."""
        import urllib.error
        import urllib.request

        port = self.api_port

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                    return bool(r.status == 200)
            except (urllib.error.URLError, ConnectionError):
                return False

        wait_for(ready, what="the agent to be ready")
        return self

    def stop(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.wait(30)

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        rc = self.proc.wait(timeout)
        self._log.close()
        return rc

    def stderr(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> Agent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.wait(30)


def read_docs(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    docs = []
    with open(path, "rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                docs.append(json.loads(line))
    return docs


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(1 for line in f if line.endswith(b"\n"))


def generate_tree(
    node: Path, *, lines: int, containers: int = 4, seed: int | None = None
) -> dict[str, Any]:
    """`kubelogs generate` as a user runs it; returns the tree's manifest (expected counts)."""
    argv = [sys.executable, "-m", "kubelogs", "generate", str(node)]
    argv += ["--lines", str(lines), "--containers", str(containers)]
    if seed is not None:
        argv += ["--seed", str(seed)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert 0 == r.returncode, r.stderr
    manifest: dict[str, Any] = json.loads((node / "manifest.json").read_text())
    return manifest
