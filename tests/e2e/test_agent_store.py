"""The default destination end to end: `kubelogs run` into the local store, then
`kubelogs search`, as a user runs them - including kill -9 at random moments."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from support.agent import Agent, node_agent_config
from support.podlogs import PodLog
from support.store_probe import search, stored_count, stored_docs
from support.waiting import wait_for


def store_config(tmp: Path, node: Path) -> Path:
    return node_agent_config(
        tmp / "kubelogs.yaml",
        data_dir=tmp / "data",
        node=node,
        store=tmp / "store",
    )


def test_kill9_loop_into_the_store_keeps_every_line_exactly_once(tmp_path: Path) -> None:
    """kill -9 at random moments while pods write and rotate: every line is stored once."""
    from support.chaos import RotatingWriter, kill9_cycles

    node = tmp_path / "node"
    pods = [PodLog(node, pod=f"busy-{i}-abcde") for i in range(3)]
    cfg = store_config(tmp_path, node)
    store = tmp_path / "store"
    with RotatingWriter(pods, seed=3) as writer:
        kill9_cycles(cfg, tmp_path, lambda: stored_count(store), cycles=10, seed=5, spread=2000)
    written = writer.written
    with Agent(cfg, tmp_path / "final.log") as agent:
        wait_for(lambda: stored_count(store) >= len(written), timeout=120, what="all lines")
        assert agent.stop() == 0
    got = Counter(d["message"] for d in stored_docs(store))

    assert len(written) == len(set(written))
    assert [] == [m for m in written if got[m] != 1]
    assert len(written) == sum(got.values())


def test_kill9_loop_with_copytruncate_into_the_store_keeps_every_line_exactly_once(
    tmp_path: Path,
) -> None:
    """The same with logrotate's copytruncate (numbered and dateext copies) for half of
    the rotations: the copy continues under the truncated file's identity, so resent
    lines are recognised and new content is not mistaken for a resend."""
    from support.chaos import RotatingWriter, kill9_cycles

    node = tmp_path / "node"
    pods = [PodLog(node, pod=f"busy-{i}-abcde") for i in range(3)]
    cfg = store_config(tmp_path, node)
    store = tmp_path / "store"
    with RotatingWriter(pods, seed=13, copytruncate=0.5) as writer:
        kill9_cycles(cfg, tmp_path, lambda: stored_count(store), cycles=10, seed=17, spread=2000)
    written = writer.written
    with Agent(cfg, tmp_path / "final.log") as agent:
        wait_for(lambda: stored_count(store) >= len(written), timeout=120, what="all lines")
        assert agent.stop() == 0
    got = Counter(d["message"] for d in stored_docs(store))

    assert [] == [m for m in written if got[m] != 1]
    assert len(written) == sum(got.values())


def test_demo_stores_everything_it_wrote_and_its_searches_work(tmp_path: Path) -> None:
    """`kubelogs demo --duration` exits 0; the store holds exactly what the pods wrote,
    and the example searches it prints run against it."""
    base = tmp_path / "demo"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubelogs",
            "demo",
            "--duration",
            "4s",
            "--dir",
            str(base),
            "--rate",
            "400",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 0 == r.returncode, r.stderr
    manifest = json.loads((base / "node" / "manifest.json").read_text())
    store = base / "store"
    lines = r.stdout.splitlines()
    printed = list(
        dict.fromkeys(  # printed at the start and again at the end
            ln.strip().split("kubelogs search", 1)[1]
            for ln in lines
            if "kubelogs search --store" in ln
        )
    )
    logs_args = next(ln.split("kubelogs logs", 1)[1] for ln in lines if "kubelogs logs --" in ln)
    pod_logs = subprocess.run(
        [sys.executable, "-m", "kubelogs", "logs", *__import__("shlex").split(logs_args)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert manifest["records"] > 0
    assert str(manifest["records"]) == search(store, "--count").stdout.strip()
    assert 0 == pod_logs.returncode, pod_logs.stderr
    assert pod_logs.stdout.strip()
    assert 5 == len(printed)
    assert lines[-1].strip().endswith(f"kubelogs ui --store {store}")
    for cmd in printed:
        if "--follow" in cmd:
            continue
        args = __import__("shlex").split(cmd)[2:]
        res = search(store, *args)
        assert 0 == res.returncode, (cmd, res.stderr)
        assert res.stdout.strip(), cmd


def test_search_follow_prints_lines_written_after_it_started(tmp_path: Path) -> None:
    """`kubelogs search --follow` keeps printing new matches while the agent writes."""
    node = tmp_path / "node"
    pod = PodLog(node)
    pod.write("old-line")
    cfg = store_config(tmp_path, node)
    store = tmp_path / "store"
    with Agent(cfg, tmp_path / "agent.log") as agent:
        wait_for(lambda: stored_count(store) == 1, what="first line stored")
        follower = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kubelogs",
                "search",
                "--store",
                str(store),
                "--follow",
                "--output",
                "json",
                "fresh",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            lines: list[str] = []
            reader = threading.Thread(
                target=lambda: lines.extend(iter(follower.stdout.readline, ""))  # type: ignore[union-attr]
            )
            reader.start()
            pod.write("fresh one", "stale two", "fresh three")
            wait_for(lambda: len(lines) >= 2, what="followed lines")
        finally:
            follower.terminate()
            follower.wait(30)
            reader.join(30)
            assert follower.stdout is not None
            follower.stdout.close()
        assert agent.stop() == 0

    assert ["fresh one", "fresh three"] == [json.loads(x)["message"] for x in lines]


def test_live_generator_with_rotation_is_stored_exactly_once(tmp_path: Path) -> None:
    """`kubelogs generate --rate` appends and rotates kubelet-style while the agent runs:
    the store ends up with exactly the records the generator reports."""
    node = tmp_path / "node"
    cfg = store_config(tmp_path, node)
    store = tmp_path / "store"
    with Agent(cfg, tmp_path / "agent.log") as agent:
        agent.wait_ready()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "kubelogs",
                "generate",
                str(node),
                "--rate",
                "3000",
                "--duration",
                "4s",
                "--rotate-size",
                "64KiB",
                "--max-rotated",
                "1000",
                "--containers",
                "4",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=120,
        )
        manifest = json.loads((node / "manifest.json").read_text())
        wait_for(lambda: stored_count(store) >= manifest["records"], timeout=60, what="all")
        assert agent.stop() == 0
    rotated = sum(len(f["rotated"]) for f in manifest["files"])

    assert rotated >= 4
    assert 0 == sum(f["deleted_records"] for f in manifest["files"])
    assert str(manifest["records"]) == search(store, "--count").stdout.strip()
    docs = stored_docs(store)
    per_container = Counter(
        (
            d["kubernetes"]["namespace"],
            d["kubernetes"]["pod"]["name"],
            d["kubernetes"]["container"]["name"],
        )
        for d in docs
    )
    expected = {(f["namespace"], f["pod"], f["container"]): f["records"] for f in manifest["files"]}
    assert expected == dict(per_container)
