"""The node agent as a user runs it: `kubelogs run` over node log trees written by the test.

Every test checks, line by line, that what was written arrived (and, where the agent
was not killed, arrived exactly once).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from support.agent import Agent, count_lines, read_docs, tail_config
from support.podlogs import PodLog
from support.waiting import wait_for


def messages(out: Path) -> list[str]:
    return [d["message"] for d in read_docs(out)]


def wait_messages(out: Path, expected: list[str], timeout: float = 60) -> list[str]:
    want = Counter(expected)

    def complete() -> bool:
        got = Counter(messages(out))
        return all(got[m] >= n for m, n in want.items())

    wait_for(complete, timeout=timeout, what=f"{len(expected)} messages in {out}")
    return messages(out)


@pytest.fixture
def node(tmp_path: Path) -> Path:
    return tmp_path / "node"


def containers_glob(node: Path) -> list[str]:
    return [str(node / "var/log/containers/*.log")]


@pytest.mark.parametrize("fmt", ["cri", "docker"])
def test_generated_node_tree_arrives_complete(tmp_path: Path, fmt: str) -> None:
    """Every record of a realistic generated tree (partials, stack traces) arrives once."""
    node = tmp_path / "node"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "kubelogs",
            "generate",
            str(node),
            "--format",
            fmt,
            "--lines",
            "30000",
            "--containers",
            "6",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    manifest = json.loads((node / "manifest.json").read_text())
    out = tmp_path / "out.ndjson"
    cfg = tail_config(tmp_path, include=containers_glob(node), out=out)
    with Agent(cfg, tmp_path / "agent.log") as agent:
        wait_for(lambda: count_lines(out) >= manifest["records"], timeout=120, what="all records")
        assert agent.stop() == 0

    docs = read_docs(out)
    assert manifest["records"] == len(docs)
    ids = Counter((d["log"]["file"]["path"], d["log"]["offset"]) for d in docs)
    assert [k for k, n in ids.items() if n > 1] == []
    per_file = Counter(d["log"]["file"]["path"] for d in docs)
    assert {str(node / f["path"]): f["records"] for f in manifest["files"]} == dict(per_file)
    sample = docs[0]
    assert sample["kubernetes"]["namespace"]
    assert sample["kubernetes"]["pod"]["uid"]
    assert sample["kubernetes"]["container"]["id"].startswith("containerd://")
    assert sample["host"]["name"] == "node-test"
    assert sample["@timestamp"].endswith("Z")
    assert len(sample["@timestamp"]) == 30
    partial = [d for d in docs if len(d["message"]) > 16384]
    assert partial, "the tree has messages split by the runtime; they must be joined"
    assert all(d["message"].endswith('"}') for d in partial)


@pytest.mark.parametrize("fmt", ["cri", "docker"])
def test_partial_lines_are_joined_with_first_part_time_and_offset(
    node: Path, tmp_path: Path, fmt: str
) -> None:
    """P..F (CRI) and chunks without a newline (Docker) become one event."""
    pod = PodLog(node, fmt=fmt)
    pod.write("before")
    start = pod.path.stat().st_size
    first_ts = pod.ns + 1_000_123
    pod.write_partial(["a" * 16384, "b" * 16384, "c" * 10])
    pod.write("after")
    out = tmp_path / "out.ndjson"
    cfg = tail_config(tmp_path, include=containers_glob(node), out=out)
    with Agent(cfg, tmp_path / "agent.log") as agent:
        wait_messages(out, ["before", "after"])
        assert agent.stop() == 0
    docs = read_docs(out)

    assert [d["message"] for d in docs] == ["before", "a" * 16384 + "b" * 16384 + "c" * 10, "after"]
    assert start == docs[1]["log"]["offset"]
    frac = first_ts % 1_000_000_000
    assert docs[1]["@timestamp"].endswith(f".{frac:09d}Z")


def test_follows_kubelet_rename_rotation(node: Path, tmp_path: Path) -> None:
    """0.log renamed to 0.log.<ts> and a new 0.log: the old one is finished, then the new."""
    pod = PodLog(node)
    out = tmp_path / "out.ndjson"
    cfg = tail_config(tmp_path, include=containers_glob(node), out=out)
    expected: list[str] = []
    with Agent(cfg, tmp_path / "agent.log") as agent:
        for r in range(4):
            batch = [f"r{r}-{i}" for i in range(500)]
            pod.write(*batch[:250])
            wait_messages(out, batch[:1])
            pod.write(*batch[250:])  # written just before the rename: must not be lost
            pod.rotate()
            expected += batch
        pod.write("last")
        expected.append("last")
        wait_messages(out, expected)
        assert agent.stop() == 0

    assert sorted(expected) == sorted(messages(out))


def test_copytruncate_restarts_from_zero_without_loss(node: Path, tmp_path: Path) -> None:
    """A file copied then truncated in place is read again from 0; the unread tail comes
    from the copy."""
    pod = PodLog(node)
    out = tmp_path / "out.ndjson"
    cfg = tail_config(tmp_path, include=containers_glob(node), out=out)
    expected: list[str] = []
    with Agent(cfg, tmp_path / "agent.log") as agent:
        for r in range(3):
            batch = [f"t{r}-{i}" for i in range(300)]
            pod.write(*batch)
            wait_messages(out, batch)
            expected += batch
            pod.copytruncate()
        pod.write("after-truncate-1", "after-truncate-2")
        expected += ["after-truncate-1", "after-truncate-2"]
        wait_messages(out, expected)
        assert agent.stop() == 0

    assert sorted(expected) == sorted(messages(out))


def test_deleted_file_is_read_to_its_end(node: Path, tmp_path: Path) -> None:
    """Lines appended just before a rotated file is deleted are still read (open handle)."""
    pod = PodLog(node)
    out = tmp_path / "out.ndjson"
    cfg = tail_config(tmp_path, include=containers_glob(node), out=out)
    with Agent(cfg, tmp_path / "agent.log") as agent:
        pod.write("first")
        wait_messages(out, ["first"])
        pod.write(*[f"tail-{i}" for i in range(2000)])
        rotated = pod.rotate()
        os.unlink(rotated)
        pod.write("new-file")
        expected = ["first", *[f"tail-{i}" for i in range(2000)], "new-file"]
        wait_messages(out, expected)
        assert agent.stop() == 0

    assert sorted(expected) == sorted(messages(out))


def test_rotation_while_agent_is_down_is_finished_on_restart(node: Path, tmp_path: Path) -> None:
    """Lines written and rotated away while the agent was stopped arrive after restart, once."""
    pod = PodLog(node)
    out = tmp_path / "out.ndjson"
    cfg = tail_config(tmp_path, include=containers_glob(node), out=out)
    pod.write(*[f"a-{i}" for i in range(100)])
    with Agent(cfg, tmp_path / "agent.log") as agent:
        wait_messages(out, [f"a-{i}" for i in range(100)])
        assert agent.stop() == 0
    # While down: more lines, a rotation, lines in the new file, and a second rotation.
    pod.write(*[f"b-{i}" for i in range(100)])
    pod.rotate()
    pod.write(*[f"c-{i}" for i in range(100)])
    pod.rotate()
    pod.write(*[f"d-{i}" for i in range(100)])
    expected = [f"{p}-{i}" for p in "abcd" for i in range(100)]
    with Agent(cfg, tmp_path / "agent2.log") as agent:
        wait_messages(out, expected)
        assert agent.stop() == 0

    assert sorted(expected) == sorted(messages(out))


def test_sigterm_drains_and_restart_resends_nothing(node: Path, tmp_path: Path) -> None:
    """SIGTERM exits 0 after saving checkpoints: a restart reads only new lines."""
    pod = PodLog(node)
    out = tmp_path / "out.ndjson"
    cfg = tail_config(tmp_path, include=containers_glob(node), out=out)
    pod.write(*[f"m-{i}" for i in range(5000)])
    with Agent(cfg, tmp_path / "agent.log") as agent:
        wait_messages(out, ["m-0"])
        assert agent.stop() == 0
    n_after_stop = count_lines(out)
    pod.write("new")
    with Agent(cfg, tmp_path / "agent2.log") as agent:
        wait_messages(out, [f"m-{i}" for i in range(5000)] + ["new"])
        assert agent.stop() == 0

    got = Counter(messages(out))
    assert n_after_stop >= 1
    assert [m for m, n in got.items() if n > 1] == []


def test_kill9_loop_with_writer_rotating_loses_nothing(node: Path, tmp_path: Path) -> None:
    """kill -9 at random moments while a writer appends and rotates: every line arrives."""
    from support.chaos import RotatingWriter, kill9_cycles

    pods = [PodLog(node, pod=f"busy-{i}-abcde") for i in range(3)]
    out = tmp_path / "out.ndjson"
    cfg = tail_config(tmp_path, include=containers_glob(node), out=out)
    with RotatingWriter(pods, seed=7) as writer:
        kill9_cycles(cfg, tmp_path, lambda: count_lines(out), cycles=10, seed=11, spread=3000)
    written = writer.written
    with Agent(cfg, tmp_path / "final.log") as agent:
        wait_messages(out, written, timeout=120)
        assert agent.stop() == 0

    got = Counter(messages(out))
    assert [m for m in written if got[m] == 0] == []
    assert len(written) == len(set(written))


def test_kill9_loop_with_writer_copytruncating_loses_nothing(node: Path, tmp_path: Path) -> None:
    """kill -9 at random moments while a writer appends and rotates, half the rotations by
    copytruncate: every line arrives (the file sink is at-least-once), none is lost."""
    from support.chaos import RotatingWriter, kill9_cycles

    pods = [PodLog(node, pod=f"busy-{i}-abcde") for i in range(3)]
    out = tmp_path / "out.ndjson"
    cfg = tail_config(tmp_path, include=containers_glob(node), out=out)
    with RotatingWriter(pods, seed=23, copytruncate=0.5) as writer:
        kill9_cycles(cfg, tmp_path, lambda: count_lines(out), cycles=8, seed=29, spread=3000)
    written = writer.written
    with Agent(cfg, tmp_path / "final.log") as agent:
        wait_messages(out, written, timeout=120)
        assert agent.stop() == 0
    text = (tmp_path / "final.log").read_text()

    got = Counter(messages(out))
    assert [m for m in written if got[m] == 0] == []
    assert "they are lost" not in text


def test_hostile_file_is_kept_and_does_not_block_others(node: Path, tmp_path: Path) -> None:
    """Invalid UTF-8, NUL bytes, a 3 MiB line and binary garbage: flagged, kept, no crash."""
    bad = PodLog(node, pod="bad-1-abcde")
    good = PodLog(node, pod="good-1-abcde")
    bad.write("ok-1")
    bad.write_raw(bad.line("x").replace(b"x\n", b"caf\xe9 \xff\xfe end\n"))
    bad.write_raw(bad.line("nul\x00byte"))
    bad.write("big-" + "y" * (3 * 1024 * 1024))
    bad.write_raw(os.urandom(4096).replace(b"\n", b"") + b"\n")
    bad.write_raw(b"not a cri line at all\n")
    bad.write("ok-2")
    good.write(*[f"g-{i}" for i in range(100)])
    out = tmp_path / "out.ndjson"
    cfg = tail_config(
        tmp_path, include=containers_glob(node), out=out, extra_source={"max_line_size": "1MiB"}
    )
    with Agent(cfg, tmp_path / "agent.log") as agent:
        wait_messages(out, ["ok-1", "ok-2", *[f"g-{i}" for i in range(100)]])
        assert agent.stop() == 0
    docs = [d for d in read_docs(out) if "bad-1" in d["log"]["file"]["path"]]

    assert docs[0]["message"] == "ok-1"
    assert docs[1]["message"] == "caf\ufffd \ufffd\ufffd end"
    assert docs[2]["message"] == "nul\x00byte"
    assert len(docs[3]["message"].encode()) == 1024 * 1024
    assert docs[3]["log"]["flags"] == ["truncated"]
    assert "malformed" in docs[4]["log"]["flags"]
    assert docs[5]["log"]["flags"] == ["malformed"]
    assert docs[5]["message"] == "not a cri line at all"
    assert docs[6]["message"] == "ok-2"
    assert len(docs) == 7


def test_incomplete_last_line_waits_for_its_newline(node: Path, tmp_path: Path) -> None:
    """A line without its newline yet is held back (not emitted, not checkpointed past)."""
    pod = PodLog(node)
    out = tmp_path / "out.ndjson"
    cfg = tail_config(tmp_path, include=containers_glob(node), out=out)
    line = pod.line("complete-me")
    pod.write("one")
    pod.write_raw(line[:20])
    size = pod.path.stat().st_size
    with Agent(cfg, tmp_path / "agent.log") as agent:
        port = agent.api_port
        wait_messages(out, ["one"])
        wait_for(lambda: _received_bytes(port) >= size, what="the agent read the fragment")
        assert messages(out) == ["one"]
        pod.write_raw(line[20:])
        wait_messages(out, ["complete-me"])
        assert agent.stop() == 0

    assert messages(out) == ["one", "complete-me"]


def _received_bytes(port: int) -> float:
    for ln in _get(port, "/metrics").decode().splitlines():
        if ln.startswith('kubelogs_component_received_bytes_total{component_id="logs"'):
            return float(ln.rsplit(" ", 1)[1])
    return 0.0


def test_new_files_and_plain_node_logs_are_found(node: Path, tmp_path: Path) -> None:
    """A `file` source follows kubelet.log-style files, including ones created later."""
    logdir = node / "var/log"
    logdir.mkdir(parents=True)
    (logdir / "kubelet.log").write_text("I0115 kubelet started\r\n\nI0115 second\n")
    out = tmp_path / "out.ndjson"
    cfg = tail_config(tmp_path, include=[str(logdir / "*.log")], out=out, source_type="file")
    with Agent(cfg, tmp_path / "agent.log") as agent:
        wait_messages(out, ["I0115 kubelet started", "I0115 second"])
        (logdir / "kube-proxy.log").write_text("proxy up\n")
        wait_messages(out, ["proxy up"], timeout=10)
        assert agent.stop() == 0
    docs = read_docs(out)

    assert docs[0]["host"] == {"name": "node-test"}
    assert docs[0]["kubernetes"] == {"node": {"name": "node-test"}}
    assert len(docs) == 3


def test_exclude_namespaces_and_read_from_end(node: Path, tmp_path: Path) -> None:
    """Excluded namespaces are not read; `read_from: end` skips history on first start."""
    kept = PodLog(node, namespace="default", pod="a-1-abcde")
    dropped = PodLog(node, namespace="kube-system", pod="b-1-abcde")
    kept.write("old")
    dropped.write("old-system")
    out = tmp_path / "out.ndjson"
    cfg = tail_config(
        tmp_path,
        include=containers_glob(node),
        out=out,
        extra_source={"exclude_namespaces": ["kube-system"], "read_from": "end"},
    )
    with Agent(cfg, tmp_path / "agent.log") as agent:
        agent.wait_ready()  # the first scan is done: "new" is written after it
        kept.write("new")
        dropped.write("new-system")
        wait_messages(out, ["new"])
        assert agent.stop() == 0

    assert messages(out) == ["new"]


def _get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return bytes(r.read())


def test_metrics_health_and_readiness(node: Path, tmp_path: Path) -> None:
    """/metrics carries the documented series; /healthz and /readyz answer."""
    pod = PodLog(node)
    pod.write(*[f"x-{i}" for i in range(10)])
    out = tmp_path / "out.ndjson"
    cfg = tail_config(tmp_path, include=containers_glob(node), out=out)
    with Agent(cfg, tmp_path / "agent.log") as agent:
        port = agent.api_port
        wait_messages(out, [f"x-{i}" for i in range(10)])
        assert _get(port, "/healthz") == b"ok\n"
        assert _get(port, "/readyz") == b"ready\n"
        text = wait_for(
            lambda: (
                (t := _get(port, "/metrics").decode())
                and 'kubelogs_file_lag_bytes{component_id="logs"' in t
                and 'kubelogs_component_sent_events_total{component_id="out",'
                'component_kind="sink",component_type="file"} 10.0'
                in t
                and t
            ),
            what="metrics after delivery",
        )
        assert agent.stop() == 0

    for series in (
        "kubelogs_component_received_events_total",
        "kubelogs_component_errors_total",
        "kubelogs_files_open",
        "kubelogs_checkpoint_age_seconds",
        "kubelogs_channel_events",
    ):
        assert series in text
    lag = [ln for ln in text.splitlines() if ln.startswith("kubelogs_file_lag_bytes{")]
    assert lag
    assert all(ln.endswith(" 0.0") for ln in lag)


def test_config_errors_exit_1_without_traceback(tmp_path: Path) -> None:
    """A broken config file gets one clear message and exit code 1."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  a: {type: kubernetes_logs, bogus: 1}\nsinks: {}\n")
    r = subprocess.run(
        [sys.executable, "-m", "kubelogs", "run", "-c", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert r.returncode == 1
    assert "sources.a.bogus: unknown key" in r.stderr
    assert "Traceback" not in r.stderr


def test_checkpoints_of_finished_deleted_files_are_removed(node: Path, tmp_path: Path) -> None:
    """Rotated files that were finished and then deleted leave no checkpoint rows behind."""
    import sqlite3

    pod = PodLog(node)
    out = tmp_path / "out.ndjson"
    cfg = tail_config(tmp_path, include=containers_glob(node), out=out)
    db = tmp_path / "data" / "checkpoints.db"

    def rows() -> list[str]:
        with sqlite3.connect(db) as c:
            return [r[0] for r in c.execute("SELECT path FROM checkpoints")]

    with Agent(cfg, tmp_path / "agent.log") as agent:
        for r in range(3):
            pod.write(f"gen-{r}")
            wait_messages(out, [f"gen-{r}"])
            pod.rotate()
        pod.write("gen-live")
        wait_messages(out, ["gen-live"])
        on_disk = sorted(str(p) for p in pod.dir.glob("0.log*"))
        assert 4 == len(on_disk)
        wait_for(lambda: on_disk == sorted(rows()), what="one row per file, under its name")
        for rotated in pod.dir.glob("0.log.*"):
            rotated.unlink()
        wait_for(lambda: rows() == [str(pod.path)], timeout=30, what="rows of deleted files gone")
        assert agent.stop() == 0


def test_slow_sink_stops_the_source_and_memory_stays_bounded(node: Path, tmp_path: Path) -> None:
    """A sink that cannot write (stdout pipe nobody reads) holds reading back; once it
    drains, every line arrives."""
    import threading

    import yaml

    pod = PodLog(node)
    n = 200_000
    pod.write(*[f"bp-{i:07d}-" + "p" * 180 for i in range(n)])
    total = pod.path.stat().st_size
    cfg = tmp_path / "stdout.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "api": {"listen": "127.0.0.1:0"},
                "sources": {"logs": {"type": "kubernetes_logs", "include": containers_glob(node)}},
                "sinks": {"out": {"type": "stdout", "inputs": ["logs"]}},
            }
        )
    )
    agent = Agent(cfg, tmp_path / "agent.log")
    agent._log = open(agent.log_path, "ab")  # noqa: SIM115
    agent.proc = subprocess.Popen(
        [sys.executable, "-m", "kubelogs", "run", "-c", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=agent._log,
    )
    try:
        port = agent.api_port

        def blocked() -> bool:
            text = _get(port, "/metrics").decode()
            return 'kubelogs_channel_events{component_id="out"}' in text and any(
                ln.startswith('kubelogs_channel_events{component_id="out"}')
                and float(ln.rsplit(" ", 1)[1]) > 0
                for ln in text.splitlines()
            )

        wait_for(blocked, what="the sink's queue to fill while stdout is not read")
        read_so_far = _received_bytes(port)
        status = Path(f"/proc/{agent.proc.pid}/status").read_text()
        rss_kib = int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS")).split()[1])
        assert read_so_far < total / 2, "the source kept reading although the sink was stuck"
        assert rss_kib < 150 * 1024

        got: list[bytes] = []
        assert agent.proc.stdout is not None
        reader = threading.Thread(target=lambda: got.extend(agent.proc.stdout))  # type: ignore[union-attr, arg-type]
        reader.start()
        wait_for(lambda: len(got) >= n, timeout=120, what="all lines through stdout")
        assert agent.stop() == 0
        reader.join(30)
    finally:
        if agent.proc.poll() is None:
            agent.proc.kill()
            agent.proc.wait(30)
        if agent.proc.stdout is not None:
            agent.proc.stdout.close()
        agent._log.close()

    msgs = [json.loads(x)["message"][:11] for x in got]
    assert [f"bp-{i:07d}-" for i in range(n)] == msgs


def test_grace_period_bounds_shutdown_when_a_sink_is_stuck(node: Path, tmp_path: Path) -> None:
    """SIGTERM with a sink that cannot write: exit 0 after `shutdown_grace_period`, with
    the checkpoint left behind what was not delivered (it is read again next time)."""
    import time

    import yaml

    pod = PodLog(node)
    pod.write(*[f"g-{i:06d}-" + "q" * 200 for i in range(50_000)])
    cfg = tmp_path / "stuck.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "api": {"listen": "127.0.0.1:0"},
                "shutdown_grace_period": "1s",
                "sources": {"logs": {"type": "kubernetes_logs", "include": containers_glob(node)}},
                "sinks": {"out": {"type": "stdout", "inputs": ["logs"]}},
            }
        )
    )
    log_path = tmp_path / "agent.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubelogs", "run", "-c", str(cfg)],
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        agent = Agent(cfg, log_path)
        port = agent.api_port
        wait_for(lambda: _received_bytes(port) > 0, what="reading started")
        started = time.monotonic()
        proc.terminate()
        rc = proc.wait(30)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        assert proc.stdout is not None
        proc.stdout.close()

    assert 0 == rc
    assert took < 15
    assert "grace period" in log_path.read_text()


def test_file_rotated_away_between_two_scans_is_still_read(node: Path, tmp_path: Path) -> None:
    """A busy container rotates twice faster than the agent scans: the file that never
    appeared under its live name is found among the rotated ones and read."""
    pod = PodLog(node)
    out = tmp_path / "out.ndjson"
    cfg = tail_config(
        tmp_path, include=containers_glob(node), out=out, extra_source={"glob_interval": "2s"}
    )
    with Agent(cfg, tmp_path / "agent.log") as agent:
        agent.wait_ready()
        pod.write("gen-a")
        wait_messages(out, ["gen-a"])
        pod.rotate()
        pod.write(*[f"gen-b-{i}" for i in range(50)])  # lives only between two scans
        pod.rotate()
        pod.write("gen-c")
        expected = ["gen-a", *[f"gen-b-{i}" for i in range(50)], "gen-c"]
        wait_messages(out, expected)
        assert agent.stop() == 0

    assert sorted(expected) == sorted(messages(out))


def test_agent_without_kubernetes_metadata_never_imports_aiohttp(
    node: Path, tmp_path: Path
) -> None:
    """The Kubernetes client (aiohttp, ~8 MiB of RSS) is loaded only by components that
    talk to the API server: scanning for `kubelogs.io/files` pods must not pull it in."""
    pod = PodLog(node)
    out = tmp_path / "out.ndjson"
    cfg = tail_config(tmp_path, include=containers_glob(node), out=out)
    log = tmp_path / "agent.log"
    with Agent(cfg, log, env={"PYTHONPROFILEIMPORTTIME": "1"}) as agent:
        agent.wait_ready()
        pod.write("first")  # read by a later scan, after the first
        wait_messages(out, ["first"])
        assert agent.stop() == 0

    imports = [line for line in log.read_text().splitlines() if line.startswith("import time:")]
    assert any("kubelogs.sources.kubernetes_logs" in line for line in imports)
    assert not [line for line in imports if "aiohttp" in line]
