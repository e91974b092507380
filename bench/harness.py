"""What every agent benchmark does to one `kubelogs run` process, in one place.

A benchmark writes a config, starts the agent as a child process (as users run it),
waits until a sink has sent the events it expects (polled from ``/metrics``), stops it
with SIGTERM and reads its CPU and peak RSS from outside: ``wait4()`` on the agent's pid
returns the user+sys time and ``ru_maxrss`` of that one process over its whole life,
start-up (imports, config) and shutdown included, which is what a node pays. The CPU
the process had used when its API port opened (``/proc/PID/stat``) is its start-up.

`run_until_sent` is that whole loop; `start_agent`, `wait_sent` and `stop_agent` are its
steps, for benchmarks that run two agents at once (bench/forward_bench.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

GEN = Path(__file__).resolve().parents[2] / "shared" / "bench" / "gen_logs.py"
PORT_TIMEOUT = 60.0
"""Seconds an agent may take to open its API port."""


def agent_config(data_dir: Path, node_name: str = "node-bench-1", **sections: Any) -> dict:
    """A `kubelogs run` config with the settings every benchmark uses (an API on a free
    port for /metrics, warnings only) and the given sections (sources, transforms, sinks)."""
    return {
        "data_dir": str(data_dir),
        "node_name": node_name,
        "api": {"listen": "127.0.0.1:0"},
        "log": {"level": "warning"},
        **sections,
    }


def tree_parser(doc: str | None, lines: int) -> argparse.ArgumentParser:
    """A parser with the flags of every benchmark that drains a generated tree: --root,
    --lines (default `lines`), --containers and --repeat."""
    ap = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--root", type=Path, help="reuse an existing generated tree")
    ap.add_argument("--lines", type=int, default=lines)
    ap.add_argument("--containers", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    return ap


def tree_for(args: argparse.Namespace, work: Path, *extra: str) -> tuple[Path, dict[str, Any]]:
    """The tree a benchmark drains and its manifest: ``--root`` as it is, or a new one
    under `work` (`generate_tree` with `extra`)."""
    if args.root is not None:
        return args.root, json.loads((args.root / "manifest.json").read_text())
    root = work / "tree"
    return root, generate_tree(root, args.lines, args.containers, *extra)


def containers_source(root: Path) -> dict[str, Any]:
    """A ``kubernetes_logs`` source over the tree's ``var/log/containers``."""
    return {"type": "kubernetes_logs", "include": [str(root / "var/log/containers/*.log")]}


def generate_tree(root: Path, lines: int, containers: int, *extra: str) -> dict[str, Any]:
    """Write a node log tree with `../shared/bench/gen_logs.py` (more of its flags in
    `extra`) and return its manifest: every benchmark measures the same kind of tree."""
    subprocess.run(
        [
            *(sys.executable, str(GEN), "--root", str(root)),
            *("--lines", str(lines), "--containers", str(containers), *extra),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    manifest: dict[str, Any] = json.loads((root / "manifest.json").read_text())
    return manifest


def sent_events(port: int, sink: str) -> float:
    """The sink's ``kubelogs_component_sent_events_total`` from the agent's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    pat = re.compile(
        r'^kubelogs_component_sent_events_total\{component_id="'
        + re.escape(sink)
        + r'"[^}]*\} (\S+)$',
        re.M,
    )
    m = pat.search(text)
    return float(m.group(1)) if m else 0.0


def process_cpu(pid: int) -> float:
    """user+sys seconds of a running process so far (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_with_rusage(proc: subprocess.Popen[bytes], timeout: float) -> resource.struct_rusage:
    """Reap the agent with wait4(): the rusage of exactly that process, from outside."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("agent did not stop within the timeout")
        time.sleep(0.05)


def listening_port(pid: int, exclude: Collection[int] = ()) -> int | None:
    """A TCP port the process listens on, other than `exclude`: the API port is printed
    at info level only, so it is found via /proc instead."""
    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        with open(f"/proc/{pid}/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                port = int(parts[1].split(":")[1], 16)
                if parts[3] == "0A" and parts[9] in inodes and port not in exclude:
                    return port
    except OSError:
        return None
    return None


@dataclass
class Agent:
    """A started `kubelogs run`: its process, API port and start-up CPU."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    started: float
    """time.monotonic() just before the process was started."""
    startup_cpu_s: float


@dataclass(frozen=True)
class AgentRun:
    """What one `run_until_sent` measured."""

    wall_s: float
    """From the start of the process until the sink had sent the expected events."""
    startup_cpu_s: float
    drained_cpu_s: float
    """CPU when the sink had sent the expected events (before shutdown)."""
    sent: float
    """The sink's sent count when the run was stopped (at least the expected count)."""
    usage: resource.struct_rusage
    """wait4()'s rusage of the whole process life."""

    @property
    def cpu_s(self) -> float:
        return self.usage.ru_utime + self.usage.ru_stime

    @property
    def peak_rss_mib(self) -> float:
        return self.usage.ru_maxrss / 1024


def start_agent(
    cfg: Mapping[str, Any],
    work: Path,
    name: str = "agent",
    *,
    config_name: str | None = None,
    env: Mapping[str, str] | None = None,
    python_args: Sequence[str] = (),
    exclude_ports: Collection[int] = (),
) -> Agent:
    """Write `cfg` to ``work/<config_name or name>.yaml``, start `kubelogs run` on it
    (stderr to ``work/<name>.log``) and wait until its API port is open.

    `env` replaces the environment (None: inherit); `python_args` go before ``-m
    kubelogs`` (e.g. cProfile); `exclude_ports` are listening ports that are not the API
    (a forward source's)."""
    cfg_path = work / f"{config_name or name}.yaml"
    cfg_path.write_text(yaml.safe_dump(dict(cfg)))
    log_path = work / f"{name}.log"
    started = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, *python_args, "-m", "kubelogs", "run", "-c", str(cfg_path)],
            stderr=log,
            stdout=subprocess.DEVNULL,
            env=None if env is None else dict(env),
        )
    port = None
    deadline = time.monotonic() + PORT_TIMEOUT
    while port is None and time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited while starting; see {log_path}")
        port = listening_port(proc.pid, exclude_ports)
        time.sleep(0.05)
    if port is None:
        proc.kill()
        raise SystemExit(f"{name} did not open its API port; see {log_path}")
    return Agent(name, proc, port, log_path, started, process_cpu(proc.pid))


def wait_sent(
    agent: Agent, expected: float, sink: str = "out", timeout: float | None = None
) -> None:
    """Poll /metrics until `sink` has sent `expected` events; fail if the agent exits
    first or (with a `timeout`, in seconds) stalls."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while sent_events(agent.port, sink) < expected:
        stalled = deadline is not None and time.monotonic() > deadline
        if agent.proc.poll() is not None or stalled:
            agent.proc.kill()
            raise SystemExit(
                f"{agent.name} exited or stalled before {sink} sent {expected:.0f} events; "
                f"see {agent.log_path}"
            )
        time.sleep(0.2)


def stop_agent(agent: Agent, timeout: float = 120) -> resource.struct_rusage:
    """SIGTERM the agent and reap it: the rusage of its whole life."""
    agent.proc.send_signal(signal.SIGTERM)
    return wait_with_rusage(agent.proc, timeout)


def run_until_sent(
    cfg: Mapping[str, Any],
    work: Path,
    expected: float,
    name: str = "agent",
    *,
    sink: str = "out",
    timeout: float | None = None,
    on_drained: Callable[[int], None] | None = None,
    **start: Any,
) -> AgentRun:
    """Start `kubelogs run` on `cfg`, wait until `sink` has sent `expected` events, stop
    it and return what it cost (see `start_agent` for the keyword arguments in `start`).
    `on_drained(pid)` runs before the stop, to read more of the live process (threads)."""
    agent = start_agent(cfg, work, name, **start)
    wait_sent(agent, expected, sink, timeout)
    if on_drained is not None:
        on_drained(agent.proc.pid)
    wall = time.monotonic() - agent.started
    drained = process_cpu(agent.proc.pid)
    sent = sent_events(agent.port, sink)
    usage = stop_agent(agent)
    return AgentRun(wall, agent.startup_cpu_s, drained, sent, usage)
