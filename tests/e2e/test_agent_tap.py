"""`kubelogs tap` against a running `kubelogs run`, as a user debugging a config runs it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from support.agent import FAST_TAIL, Agent, count_lines, write_config
from support.waiting import wait_for


def tap(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kubelogs", "tap", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_tap_prints_the_events_leaving_a_source_then_exits_at_the_limit(tmp_path: Path) -> None:
    log_file, out = tmp_path / "app.log", tmp_path / "out.ndjson"
    log_file.write_text("before the tap\n")
    cfg = write_config(
        tmp_path / "kubelogs.yaml",
        {
            "data_dir": str(tmp_path / "data"),
            "api": {"listen": "127.0.0.1:0"},
            "sources": {"logs": {"type": "file", "paths": [str(log_file)], **FAST_TAIL}},
            "sinks": {"out": {"type": "file", "inputs": ["logs"], "path": str(out)}},
        },
    )
    with Agent(cfg, tmp_path / "agent.log") as agent:
        agent.wait_ready()
        wait_for(lambda: count_lines(out) == 1, what="the first line in the sink")
        api = f"127.0.0.1:{agent.api_port}"
        proc = tap("logs", "--limit", "3", "--api", api)
        wait_for(lambda: "tap on logs started" in agent.stderr(), what="the tap to subscribe")
        with open(log_file, "a") as f:
            f.writelines(f"tapped {i}\n" for i in range(5))
        stdout, stderr = proc.communicate(timeout=60)
        assert 0 == proc.returncode, stderr
        docs = [json.loads(line) for line in stdout.splitlines()]
        assert [d["message"] for d in docs] == ["tapped 0", "tapped 1", "tapped 2"]
        assert all(d["log"]["file"]["path"] == str(log_file) for d in docs)
        ended = "tap on logs ended: 3 events sent, 0 dropped"
        wait_for(lambda: ended in agent.stderr(), what="the end of the tap in the agent's log")
        # the pipeline itself got everything, before, during and after the tap
        wait_for(lambda: count_lines(out) == 6, what="every line in the sink")

        # a reader that goes away (Ctrl-C) is unsubscribed at the next event it misses
        proc = tap("logs", "--api", api)
        wait_for(lambda: agent.stderr().count("tap on logs started") == 2, what="2nd tap")
        proc.kill()
        proc.communicate(timeout=60)

        def gone() -> bool:
            with open(log_file, "a") as f:
                f.write("after the reader left\n")
            return agent.stderr().count("tap on logs ended") == 2

        wait_for(gone, interval=0.2, what="the agent to notice the reader left")

        # a sink has no output; an unknown id lists what can be tapped
        for component, text in [
            ("out", "'out' is a sink (it has no output; tap its inputs); tappable: logs"),
            ("nope", "'nope' is not a component of the running pipeline; tappable: logs"),
        ]:
            r = subprocess.run(
                [sys.executable, "-m", "kubelogs", "tap", component, "--api", api],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert 1 == r.returncode
            assert r.stderr.strip() == f"error: tap {component}: {text}"
        assert 0 == agent.stop()


def test_tap_keeps_streaming_across_a_reload_and_reads_the_address_from_the_config(
    tmp_path: Path,
) -> None:
    import socket

    with socket.socket() as s:  # a fixed port, so that `tap -c` can read it from the file
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_file, out = tmp_path / "app.log", tmp_path / "out.ndjson"
    log_file.touch()
    data = {
        "data_dir": str(tmp_path / "data"),
        "api": {"listen": f"127.0.0.1:{port}"},
        "sources": {"logs": {"type": "file", "paths": [str(log_file)], **FAST_TAIL}},
        "sinks": {"out": {"type": "file", "inputs": ["logs"], "path": str(out)}},
    }
    cfg = write_config(tmp_path / "kubelogs.yaml", data)
    with Agent(cfg, tmp_path / "agent.log") as agent:
        agent.wait_ready()
        proc = tap("logs", "--limit", "2", "-c", str(cfg))
        wait_for(lambda: "tap on logs started" in agent.stderr(), what="the tap to subscribe")
        with open(log_file, "a") as f:
            f.write("first\n")
        wait_for(lambda: count_lines(out) == 1, what="the first line")
        data["log"] = {"summary_interval": "30s"}
        cfg.write_text(yaml.safe_dump(data))
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in agent.stderr(), what="the reload")
        with open(log_file, "a") as f:
            f.write("second\n")
        stdout, stderr = proc.communicate(timeout=60)
        assert 0 == proc.returncode, stderr
        assert [json.loads(line)["message"] for line in stdout.splitlines()] == [
            "first",
            "second",
        ]
        assert 0 == agent.stop()


def test_tap_without_an_agent_says_where_it_looked(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    r = subprocess.run(
        [sys.executable, "-m", "kubelogs", "tap", "logs", "--api", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 2 == r.returncode
    assert r.stderr.startswith(f"error: cannot reach the agent's API at 127.0.0.1:{port}: ")


def test_tap_on_a_named_output_of_a_route(tmp_path: Path) -> None:
    log_file, out = tmp_path / "app.log", tmp_path / "out.ndjson"
    log_file.touch()
    cfg = write_config(
        tmp_path / "kubelogs.yaml",
        {
            "data_dir": str(tmp_path / "data"),
            "api": {"listen": "127.0.0.1:0"},
            "sources": {"logs": {"type": "file", "paths": [str(log_file)], **FAST_TAIL}},
            "transforms": {
                "split": {"type": "route", "inputs": ["logs"], "routes": {"errors": "error"}}
            },
            "sinks": {
                "out": {"type": "file", "inputs": ["split.errors", "split._unmatched"]}
                | {"path": str(out)}
            },
        },
    )
    with Agent(cfg, tmp_path / "agent.log") as agent:
        agent.wait_ready()
        api = f"127.0.0.1:{agent.api_port}"
        r = subprocess.run(
            [sys.executable, "-m", "kubelogs", "tap", "split", "--api", api],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert 1 == r.returncode
        assert "tappable: logs, split._unmatched, split.errors" in r.stderr
        proc = tap("split.errors", "--limit", "1", "--api", api)
        wait_for(lambda: "tap on split.errors started" in agent.stderr(), what="the tap")
        with open(log_file, "a") as f:
            f.write("all good\nan error happened\n")
        stdout, stderr = proc.communicate(timeout=60)
        assert 0 == proc.returncode, stderr
        assert [json.loads(line)["message"] for line in stdout.splitlines()] == [
            "an error happened"
        ]
        wait_for(lambda: count_lines(out) == 2, what="both lines in the sink")
        assert 0 == agent.stop()
