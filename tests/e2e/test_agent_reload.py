"""Configuration reload of a running `kubelogs run`: SIGHUP and `watch_config`, as an
operator (or a ConfigMap update) triggers them, while lines are being written."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from support.agent import FAST_TAIL, Agent, count_lines, read_docs, write_config
from support.line_writer import LineWriter as Writer
from support.waiting import wait_for


def file_config(tmp: Path, log_file: Path, out: Path, **root: Any) -> dict[str, Any]:
    return {
        "data_dir": str(tmp / "data"),
        "node_name": "node-test",
        "api": {"listen": "127.0.0.1:0"},
        "shutdown_grace_period": "20s",
        "sources": {"logs": {"type": "file", "paths": [str(log_file)], **FAST_TAIL}},
        "sinks": {"out": {"type": "file", "inputs": ["logs"], "path": str(out)}},
        **root,
    }


def reloads(agent: Agent) -> int:
    return agent.stderr().count("configuration reloaded from")


def assert_exactly_once(out: Path, written: int) -> None:
    messages = Counter(d["message"] for d in read_docs(out))
    expected = {f"line {i:07d}" for i in range(written)}
    missing = expected - set(messages)
    duplicated = {m: n for m, n in messages.items() if n > 1}
    assert not missing, f"{len(missing)} lines lost, e.g. {sorted(missing)[:3]}"
    assert not duplicated, f"{len(duplicated)} lines duplicated, e.g. {list(duplicated)[:3]}"
    assert set(messages) == expected


KINDS = ("sink", "transform-added", "transform", "transform-removed", "source", "sink-added")
KINDS += ("sink-removed", "whole")


def _change(data: dict[str, Any], tmp: Path, i: int) -> str:
    """Apply the i-th change of a cycle through every kind of reload to `data`."""
    kind = KINDS[i % len(KINDS)]
    if kind == "sink":
        data["sinks"]["out"]["fsync"] = not data["sinks"]["out"].get("fsync", False)
    elif kind in ("transform-added", "transform"):
        data["transforms"] = {
            "keep": {"type": "filter", "inputs": ["logs"], "condition": f"not r{i}x"}
        }
        data["sinks"]["out"]["inputs"] = ["keep"]
    elif kind == "transform-removed":
        del data["transforms"]
        data["sinks"]["out"]["inputs"] = ["logs"]
    elif kind == "source":
        data["sources"]["logs"]["poll_interval"] = f"{20 + i % 7}ms"
    elif kind == "sink-added":
        data["sinks"]["copy"] = {"type": "file", "inputs": ["logs"], "path": str(tmp / "c.nd")}
    elif kind == "sink-removed":
        del data["sinks"]["copy"]
    else:
        data["log"] = {"summary_interval": f"{60 + i}s"}
    return kind


def test_sighup_reloads_repeatedly_while_lines_are_written_every_line_exactly_once(
    tmp_path: Path,
) -> None:
    """Every kind of change (a sink, a transform added, changed and removed, the source,
    a sink added and removed, a whole-pipeline restart) while a file is written."""
    log_file, out = tmp_path / "app.log", tmp_path / "out.ndjson"
    log_file.touch()
    cfg = tmp_path / "kubelogs.yaml"
    write_config(cfg, file_config(tmp_path, log_file, out))
    rounds = int(os.environ.get("KUBELOGS_RELOAD_ROUNDS", "16"))
    kinds = []
    data = file_config(tmp_path, log_file, out)
    with Agent(cfg, tmp_path / "agent.log") as agent:
        agent.wait_ready()
        with Writer(log_file) as writer:
            for i in range(rounds):
                kinds.append(_change(data, tmp_path, i))
                write_config(cfg, data)
                target = 200 * i
                wait_for(lambda t=target: writer.written > t, what="the writer to make progress")
                assert agent.proc is not None
                agent.proc.send_signal(signal.SIGHUP)
                wait_for(lambda i=i: reloads(agent) > i, timeout=60, what=f"reload {i}")
        written = writer.written
        wait_for(lambda: count_lines(out) >= written, timeout=60, what="every line in the sink")
        assert 0 == agent.stop()
    assert reloads(agent) == rounds
    log = agent.stderr()
    # the source keeps running unless it changed (and the sink, unless it changed)
    assert log.count("kept running: logs") == sum(k not in ("whole", "source") for k in kinds)
    assert log.count("; kept running: out") == kinds.count("source")
    assert log.count("draining the running pipeline") == kinds.count("whole")
    assert_exactly_once(out, written)


def test_invalid_config_is_refused_with_its_problems_and_the_old_one_keeps_running(
    tmp_path: Path,
) -> None:
    log_file, out = tmp_path / "app.log", tmp_path / "out.ndjson"
    log_file.write_text("before\n")
    cfg = tmp_path / "kubelogs.yaml"
    good = file_config(tmp_path, log_file, out)
    write_config(cfg, good)
    with Agent(cfg, tmp_path / "agent.log") as agent:
        agent.wait_ready()
        wait_for(lambda: count_lines(out) == 1, what="the first line")
        bad = yaml.safe_load(yaml.safe_dump(good))
        bad["sinks"]["out"]["inputs"] = ["nope"]
        bad["sources"]["logs"]["read_form"] = "end"
        write_config(cfg, bad)
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in agent.stderr(), what="the refusal in the log")
        log = agent.stderr()
        assert "sinks.out.inputs[0]: 'nope' matches no source or transform" in log
        assert "sources.logs.read_form: unknown key (did you mean `read_from`?)" in log
        with open(log_file, "a") as f:
            f.write("after\n")
        wait_for(lambda: count_lines(out) == 2, what="a line after the refused reload")
        # the same config again is not a change: nothing restarts
        write_config(cfg, good)
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "has not changed" in agent.stderr(), what="the no-op reload")
        # a change that touches no component is applied in place (here: JSON logs)
        write_config(cfg, {**good, "log": {"format": "json"}})
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "applied without a restart" in agent.stderr(), what="in-place reload")
        with open(log_file, "a") as f:
            f.write("debug\n")
        wait_for(lambda: count_lines(out) == 3, what="a line after the in-place reload")
        assert 0 == agent.stop()
    assert reloads(agent) == 1
    assert "draining the running pipeline" not in agent.stderr()
    after = agent.stderr().split("applied without a restart")[1].splitlines()[1:]
    assert after
    assert all(line.startswith("{") for line in after), after
    assert [d["message"] for d in read_docs(out)] == ["before", "after", "debug"]


def test_watch_config_follows_a_configmap_symlink_swap(tmp_path: Path) -> None:
    """A ConfigMap volume: kubelogs.yaml -> ..data/kubelogs.yaml, ..data -> ..v1; an
    update writes ..v2 and swaps the ..data symlink atomically."""
    log_file, out, out2 = tmp_path / "app.log", tmp_path / "out.ndjson", tmp_path / "out2.ndjson"
    log_file.write_text("one\n")
    mount = tmp_path / "config"
    (mount / "..v1").mkdir(parents=True)
    first = file_config(tmp_path, log_file, out, watch_config=True)
    write_config(mount / "..v1" / "kubelogs.yaml", first)
    (mount / "..data").symlink_to("..v1")
    (mount / "kubelogs.yaml").symlink_to("..data/kubelogs.yaml")
    with Agent(mount / "kubelogs.yaml", tmp_path / "agent.log") as agent:
        agent.wait_ready()
        wait_for(lambda: count_lines(out) == 1, what="the first line")
        second = yaml.safe_load(yaml.safe_dump(first))
        second["sinks"]["copy"] = {"type": "file", "inputs": ["logs"], "path": str(out2)}
        (mount / "..v2").mkdir()
        write_config(mount / "..v2" / "kubelogs.yaml", second)
        (mount / "..data_tmp").symlink_to("..v2")
        os.replace(mount / "..data_tmp", mount / "..data")
        wait_for(lambda: reloads(agent) == 1, timeout=30, what="the reload after the swap")
        assert "changed: copy" in agent.stderr()
        with open(log_file, "a") as f:
            f.write("two\n")
        wait_for(lambda: count_lines(out2) >= 1, what="the new sink's line")
        wait_for(lambda: count_lines(out) == 2, what="the old sink's second line")
        assert 0 == agent.stop()
    assert [d["message"] for d in read_docs(out)] == ["one", "two"]
    # the new sink starts from the source's checkpoint: only lines read after the reload
    assert [d["message"] for d in read_docs(out2)] == ["two"]


def test_reloads_while_pods_write_and_rotate_keep_every_line_exactly_once(
    tmp_path: Path,
) -> None:
    """Container logs (kubernetes_logs, CRI) rotated by kubelet's rename while SIGHUPs
    add and change a transform: each reload drains, then resumes from the checkpoints,
    rotated files included."""
    from support.chaos import RotatingWriter
    from support.podlogs import PodLog

    node, out = tmp_path / "node", tmp_path / "out.ndjson"
    pods = [PodLog(node, pod=f"busy-{i}-abcde") for i in range(3)]
    base: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "node_name": "node-test",
        "api": {"listen": "127.0.0.1:0"},
        "shutdown_grace_period": "20s",
        "sources": {
            "logs": {
                "type": "kubernetes_logs",
                "include": [str(node / "var/log/containers/*.log")],
                **FAST_TAIL,
            }
        },
        "sinks": {"out": {"type": "file", "inputs": ["logs"], "path": str(out)}},
    }
    cfg = write_config(tmp_path / "kubelogs.yaml", base)
    rounds = int(os.environ.get("KUBELOGS_RELOAD_ROUNDS", "6"))
    with Agent(cfg, tmp_path / "agent.log") as agent:
        agent.wait_ready()
        with RotatingWriter(pods, seed=5) as writer:
            for i in range(1, rounds + 1):
                data = yaml.safe_load(yaml.safe_dump(base))
                if i % 2:  # odd rounds: a filter in between that keeps everything
                    data["transforms"] = {
                        "keep": {"type": "filter", "inputs": ["logs"], "condition": f"not r{i}x"}
                    }
                    data["sinks"]["out"]["inputs"] = ["keep"]
                write_config(cfg, data)
                target = count_lines(out) + 200
                wait_for(lambda t=target: count_lines(out) > t, timeout=60, what="progress")
                assert agent.proc is not None
                agent.proc.send_signal(signal.SIGHUP)
                wait_for(lambda i=i: reloads(agent) >= i, timeout=60, what=f"reload {i}")
        written = writer.written
        wait_for(lambda: count_lines(out) >= len(written), timeout=120, what="every line")
        assert 0 == agent.stop()
    assert "changed: keep, out" in agent.stderr()
    # only the filter and the sink restart: the source keeps its files and positions
    assert "draining the running pipeline" not in agent.stderr()
    assert agent.stderr().count("kept running: logs") == rounds
    got = Counter(d["message"] for d in read_docs(out))
    assert [m for m in written if got[m] == 0] == []
    assert {m: n for m, n in got.items() if n > 1} == {}
    assert len(got) == len(written)
