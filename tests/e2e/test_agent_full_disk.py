"""A full disk never wedges the agent (DESIGN.md section 7), on a real small filesystem.

Each test mounts a tmpfs of a few MiB and runs `kubelogs run` over a generated node tree
that holds more than the filesystem can: the local store evicts its oldest segments
(counted on /metrics) and keeps going, under `max_size` or on a really full disk; the
`file` sink, its disk filled by a filler file, retries without exiting or tearing a line,
and once the filler is deleted every generated line arrives.

Mounting needs root (CI runs as root). Without it the tests are skipped, and the same
behaviour is covered with an injected ENOSPC by tests/unit/store/test_store_full_disk.py
and tests/unit/sinks/. As root a mount that fails is a failure under CI=true.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelogs.testing.generate import MARKER
from support.agent import FAST_TAIL, Agent, count_lines, generate_tree, read_docs, write_config
from support.podlogs import PodLog
from support.small_fs import fill, small_tmpfs
from support.store_probe import search
from support.waiting import wait_for


@pytest.fixture
def small_fs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A tmpfs of ``request.param`` (e.g. ``"2m"``) mounted in the test's directory."""
    covered_by = (
        "the injected-ENOSPC unit tests (tests/unit/store/test_store_full_disk.py, "
        "tests/unit/sinks) cover this path"
    )
    with small_tmpfs(tmp_path, getattr(request, "param", "2m"), covered_by) as mnt:
        yield mnt


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """150,000 lines (~37 MB raw, ~3.5 MB in the store): more than a 2 MiB filesystem."""
    node = tmp_path_factory.mktemp("node")
    generate(node, lines=150_000, containers=6)
    return node


def generate(node: Path, *, lines: int, containers: int) -> dict[str, Any]:
    return generate_tree(node, lines=lines, containers=containers)


def config(tmp: Path, node: Path, sink: dict[str, Any], *more: Path) -> Path:
    """A config reading the containers of `node` (and of `more` node trees)."""
    return write_config(
        tmp / "kubelogs.yaml",
        {
            "data_dir": str(tmp / "data"),  # checkpoints stay off the small filesystem
            "node_name": "node-test",
            "api": {"listen": "127.0.0.1:0"},
            "sources": {
                "logs": {
                    "type": "kubernetes_logs",
                    **FAST_TAIL,
                    "include": [str(n / "var/log/containers/*.log") for n in (node, *more)],
                }
            },
            "sinks": {"out": {"inputs": ["logs"], **sink}},
        },
    )


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        m = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if m:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def metric(port: int, name: str, **labels: str) -> float:
    """Sum of the samples of `name` that carry `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in scrape(port).items() if n == name and want <= ls)


def running_metric(agent: Agent, port: int, name: str, **labels: str) -> float:
    """`metric`, after checking that the agent still runs (with its stderr if not)."""
    assert agent.proc is not None
    assert agent.proc.poll() is None, agent.stderr()
    try:
        return metric(port, name, **labels)
    except OSError:  # it exited just now: the next call says how
        return -1.0


def segments_size(store: Path) -> int:
    return sum(p.stat().st_size for p in (store / "segments").glob("*.seg"))


def check_stored(store: Path, manifest: dict[str, Any], node: Path) -> list[dict[str, Any]]:
    """Every stored document is a generated line, stored once."""
    r = search(store, "--limit", "0", "--output", "json")
    assert 0 == r.returncode, r.stderr
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    ids = Counter((d["log"]["file"]["path"], d["log"]["offset"]) for d in docs)
    paths = {str(node / f["path"]) for f in manifest["files"]}
    assert [] == [k for k, n in ids.items() if n > 1]
    assert {p for p, _ in ids} <= paths
    return docs


@pytest.mark.parametrize("small_fs", ["2m"], indirect=True)
def test_store_stays_under_max_size_on_a_small_filesystem(
    small_fs: Path, tmp_path: Path, big_tree: Path
) -> None:
    """`max_size` below the filesystem's size: the store evicts its oldest segments after
    every write that went over (not every 10 s), so the disk never fills, and the agent
    reads the whole backlog."""
    manifest = json.loads((big_tree / "manifest.json").read_text())
    store = small_fs / "store"
    max_size = 1 << 20
    cfg = config(
        tmp_path,
        big_tree,
        {
            "type": "local",
            "path": str(store),
            "max_size": "1MiB",
            "block_docs": 5000,
            "flush_interval": "100ms",
        },
    )
    sizes: list[int] = []
    with Agent(cfg, tmp_path / "agent.log") as agent:
        port = agent.api_port

        def done() -> bool:
            sizes.append(segments_size(store) if (store / "segments").exists() else 0)
            sent = running_metric(
                agent, port, "kubelogs_component_sent_events_total", component_id="out"
            )
            return sent >= manifest["records"]

        wait_for(done, timeout=240, interval=0.2, what="every record stored or evicted")
        evicted = metric(port, "kubelogs_store_evicted_segments_total", reason="max_size")
        evicted_bytes = metric(port, "kubelogs_store_evicted_bytes_total", reason="max_size")
        full = metric(port, "kubelogs_store_evicted_segments_total", reason="disk_full")
        assert agent.stop() == 0, agent.stderr()

    docs = check_stored(store, manifest, big_tree)
    assert evicted >= 2
    assert evicted_bytes >= manifest["bytes"] // 20  # a fair part of what was read
    assert 0 == full  # the disk never filled up
    assert max(sizes) <= max_size + 512 * 1024  # at most one block over
    assert segments_size(store) <= max_size
    assert 0 < len(docs) < manifest["records"]


@pytest.mark.parametrize("small_fs", ["2m"], indirect=True)
def test_store_on_a_full_disk_evicts_and_keeps_going_also_after_a_restart(
    small_fs: Path, tmp_path: Path, big_tree: Path
) -> None:
    """`max_size` above the filesystem's size: writes hit ENOSPC for real. The store
    evicts its oldest segments (counted as disk_full), the agent never exits, and a
    restart on the still-full disk goes on storing new lines."""
    manifest = json.loads((big_tree / "manifest.json").read_text())
    store = small_fs / "store"
    cfg = config(
        tmp_path,
        big_tree,
        {
            "type": "local",
            "path": str(store),
            "max_size": "64MiB",
            "block_docs": 5000,
            "flush_interval": "100ms",
        },
    )
    with Agent(cfg, tmp_path / "agent.log") as agent:
        port = agent.api_port

        def done() -> bool:
            sent = running_metric(
                agent, port, "kubelogs_component_sent_events_total", component_id="out"
            )
            return sent >= manifest["records"]

        wait_for(done, timeout=240, interval=0.2, what="every record stored or evicted")
        evicted = metric(port, "kubelogs_store_evicted_segments_total", reason="disk_full")
        assert agent.stop() == 0, agent.stderr()
    check_stored(store, manifest, big_tree)
    assert evicted >= 2  # segments are cut from the disk's size, not only from max_size
    assert "disk full; evicting the oldest segment" in agent.stderr()

    late_node = tmp_path / "late-node"  # the shared big tree stays as generated
    pod = PodLog(late_node, pod="late-0-abcde")
    late = [f"late line {i} " + "y" * 200 for i in range(3000)]
    sink = yaml.safe_load(cfg.read_text())["sinks"]["out"]
    del sink["inputs"]
    cfg = config(tmp_path, big_tree, sink, late_node)
    with Agent(cfg, tmp_path / "restart.log") as agent:
        for i in range(0, len(late), 500):
            pod.write(*late[i : i + 500])
        wait_for(
            lambda: search(store, "--count", "late").stdout.strip() == str(len(late)),
            timeout=120,
            interval=0.5,
            what="the lines written after the restart",
        )
        assert agent.stop() == 0, agent.stderr()


@pytest.mark.parametrize("small_fs", ["16m"], indirect=True)
def test_file_sink_on_a_full_disk_retries_and_every_line_arrives(
    small_fs: Path, tmp_path: Path
) -> None:
    """The disk is filled by another file, but for 1 MiB: the file sink writes what fits,
    then retries (counted, logged) without exiting and without a torn line; once the
    filler is deleted every generated line arrives."""
    node = tmp_path / "node"
    manifest = generate(node, lines=12_000, containers=4)
    out = small_fs / "out.ndjson"
    filler = small_fs / "filler"
    with open(filler, "wb") as f:
        free = os.statvfs(small_fs).f_bavail * os.statvfs(small_fs).f_frsize
        f.write(b"\0" * (free - (1 << 20)))
    cfg = config(tmp_path, node, {"type": "file", "path": str(out)})
    with Agent(cfg, tmp_path / "agent.log") as agent:
        port = agent.api_port

        def retrying() -> bool:
            failed = running_metric(
                agent, port, "kubelogs_component_errors_total", error_type="ENOSPC"
            )
            return failed >= 3

        wait_for(retrying, timeout=120, what="writes retried on the full disk")
        assert count_lines(out) < manifest["records"]
        filler.unlink()
        wait_for(
            lambda: count_lines(out) >= manifest["records"],
            timeout=120,
            what="every line once space returned",
        )
        assert agent.stop() == 0, agent.stderr()

    docs = read_docs(out)  # json.loads of every line: a torn one would not parse
    assert out.read_bytes().endswith(b"\n")
    assert len(docs) == count_lines(out) == len(out.read_bytes().splitlines())
    got = {(d["log"]["file"]["path"], d["log"]["offset"]) for d in docs}
    per_file = Counter(path for path, _ in got)
    expected = {str(node / f["path"]): f["records"] for f in manifest["files"]}
    missing = {p: n - per_file.get(p, 0) for p, n in expected.items() if per_file.get(p, 0) != n}
    assert {} == missing
    assert "No space left on device" in agent.stderr()


@pytest.mark.parametrize("small_fs", ["2m"], indirect=True)
def test_store_on_a_disk_full_from_the_start_holds_back_then_stores_everything(
    small_fs: Path, tmp_path: Path
) -> None:
    """Another file took all the space: the store cannot even create its index, and has
    nothing to evict. The agent keeps running, holds the lines back (nothing
    acknowledged, failures counted), and once the filler is deleted it stores every
    line exactly once - by itself, without a restart."""
    node = tmp_path / "node"
    manifest = generate(node, lines=5000, containers=3)
    store = small_fs / "store"
    filler = small_fs / "filler"
    fill(filler)
    cfg = config(tmp_path, node, {"type": "local", "path": str(store), "flush_interval": "100ms"})
    with Agent(cfg, tmp_path / "agent.log") as agent:
        port = agent.api_port

        def held_back() -> bool:
            failed = running_metric(
                agent, port, "kubelogs_component_errors_total", error_type="StoreFullError"
            )
            return failed >= 3

        wait_for(held_back, timeout=120, what="failed attempts on the full disk")
        assert 0 == metric(port, "kubelogs_component_sent_events_total", component_id="out")
        filler.unlink()
        wait_for(
            lambda: (
                running_metric(
                    agent, port, "kubelogs_component_sent_events_total", component_id="out"
                )
                >= manifest["records"]
            ),
            timeout=120,
            what="every line once space returned",
        )
        assert agent.stop() == 0, agent.stderr()

    docs = check_stored(store, manifest, node)
    assert manifest["records"] == len(docs)
    assert "disk is full" in agent.stderr()


@pytest.mark.parametrize("small_fs", ["2m"], indirect=True)
def test_store_with_nothing_to_evict_holds_writes_back_until_space_returns(
    small_fs: Path, tmp_path: Path
) -> None:
    """The store is open and empty when another file fills the disk: writes fail and
    there is no segment to evict. The lines are held back, unacknowledged, and all of
    them are stored once the filler is deleted."""
    node = tmp_path / "node"
    store = small_fs / "store"
    (node / "var/log/containers").mkdir(parents=True)
    (node / MARKER).write_text("the tree below is the generator's to replace\n")
    cfg = config(tmp_path, node, {"type": "local", "path": str(store), "flush_interval": "100ms"})
    with Agent(cfg, tmp_path / "agent.log") as agent:
        agent.wait_ready()
        port = agent.api_port
        wait_for(lambda: (store / "index.sqlite").exists(), what="the store opened")
        fill(small_fs / "filler")
        manifest = generate(node, lines=5000, containers=3)

        def held_back() -> bool:
            failed = running_metric(
                agent, port, "kubelogs_component_errors_total", error_type="StoreFullError"
            )
            return failed >= 3

        wait_for(held_back, timeout=120, what="failed writes on the full disk")
        assert 0 == metric(port, "kubelogs_component_sent_events_total", component_id="out")
        (small_fs / "filler").unlink()
        wait_for(
            lambda: (
                running_metric(
                    agent, port, "kubelogs_component_sent_events_total", component_id="out"
                )
                >= manifest["records"]
            ),
            timeout=120,
            what="every line once space returned",
        )
        assert agent.stop() == 0, agent.stderr()

    docs = check_stored(store, manifest, node)
    assert manifest["records"] == len(docs)
    assert "nothing left to evict; holding back" in agent.stderr()
