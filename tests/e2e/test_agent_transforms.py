"""`kubelogs run` with a file source -> filter -> route -> two file sinks: what each sink
gets, and that dropped events are acknowledged (the checkpoint reaches the file's end
although its last lines were all filtered out)."""

from __future__ import annotations

import re
import sqlite3
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from support.agent import Agent, read_docs, write_config
from support.waiting import wait_for

LINES = [
    "GET /healthz 200",
    "payments: charge ok id=1",
    "ERROR payments: card declined id=2",
    "worker failed to start",
    "GET /healthz 200",
    "cache warm",
    "error: disk quota",
    "GET /healthz 200",
    "GET /healthz 200",
]


def _config(tmp: Path, log: Path, errors: Path, rest: Path) -> Path:
    data: dict[str, Any] = {
        "data_dir": str(tmp / "data"),
        "node_name": "node-test",
        "api": {"listen": "127.0.0.1:0"},
        "shutdown_grace_period": "20s",
        "sources": {
            "app": {
                "type": "file",
                "paths": [str(log)],
                "glob_interval": "200ms",
                "poll_interval": "20ms",
                "checkpoint_interval": "100ms",
            }
        },
        "transforms": {
            "quiet": {"type": "filter", "inputs": ["app"], "condition": 'not "GET /healthz"'},
            "split": {
                "type": "route",
                "inputs": ["quiet"],
                "routes": {"errors": "error or fail*", "payments": "payments", "noise": "cache"},
            },
        },
        "sinks": {
            "errs": {"type": "file", "inputs": ["split.errors"], "path": str(errors)},
            "rest": {
                "type": "file",
                "inputs": ["split.payments", "split._unmatched"],
                "path": str(rest),
            },
        },
    }
    return write_config(tmp / "kubelogs.yaml", data)


def test_filter_and_route_into_two_sinks(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(line + "\n" for line in LINES))
    errors, rest = tmp_path / "errors.ndjson", tmp_path / "rest.ndjson"
    cfg = _config(tmp_path, log, errors, rest)

    with Agent(cfg, tmp_path / "agent.log") as agent:
        wait_for(
            lambda: len(read_docs(errors)) >= 3 and len(read_docs(rest)) >= 2,
            what="routed documents",
        )
        # a later read whose every line is dropped: acknowledged, so checkpointed
        with log.open("a") as f:
            f.write("GET /healthz 200\n" * 50)
        size = log.stat().st_size
        wait_for(lambda: _checkpoints(tmp_path) == [size], what="the checkpoint at the end")
        metrics = _metrics(agent.api_port)
        assert agent.stop() == 0, agent.stderr()

    err_msgs = [d["message"] for d in read_docs(errors)]
    rest_msgs = Counter(d["message"] for d in read_docs(rest))
    assert err_msgs == [
        "ERROR payments: card declined id=2",
        "worker failed to start",
        "error: disk quota",
    ]
    # `rest` reads two outputs: payments (two events, one also an error) and the unmatched
    assert rest_msgs == Counter(
        {
            "payments: charge ok id=1": 1,
            "ERROR payments: card declined id=2": 1,
        }
    )
    # dropped on purpose: the health checks by the filter, `split.noise` (read by nobody)
    assert metrics[("quiet", "kubelogs_component_discarded_events_total")] == 54
    assert metrics[("split", "kubelogs_component_discarded_events_total")] == 1
    assert metrics[("quiet", "kubelogs_component_received_events_total")] == 59
    assert metrics[("quiet", "kubelogs_component_sent_events_total")] == 5
    assert metrics[("split", "kubelogs_component_sent_events_total")] == 5
    assert _checkpoints(tmp_path) == [log.stat().st_size]


def _metrics(port: int) -> dict[tuple[str, str], float]:
    """Per (component, metric) sums from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[tuple[str, str], float] = {}
    for m in re.finditer(r'^(kubelogs_\w+)\{component_id="([^"]+)"[^}]*\} (\S+)$', text, re.M):
        key = (m.group(2), m.group(1))
        out[key] = out.get(key, 0.0) + float(m.group(3))
    return out


def _checkpoints(tmp: Path) -> list[int]:
    path = tmp / "data" / "checkpoints.db"
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    try:
        return [row[0] for row in db.execute("SELECT offset FROM checkpoints")]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


USER_CODE = """
def tag(event):
    if "boom" in event["message"]:
        raise ValueError("user bug")
    event["fields"]["len"] = len(event["message"])
    return event
"""


def test_python_redact_modify_chain(tmp_path: Path) -> None:
    """A user function, redaction and a static field, as `kubelogs run` wires them: a
    user error flags the event and lets it through."""
    log = tmp_path / "app.log"
    log.write_text("login bob@example.com ok\nboom\nGET https://u:secret@db.local/x\n")
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "tags.py").write_text(USER_CODE)
    out = tmp_path / "out.ndjson"
    data: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "node_name": "node-test",
        "api": {"listen": "127.0.0.1:0"},
        "sources": {"app": {"type": "file", "paths": [str(log)], "poll_interval": "20ms"}},
        "transforms": {
            "py": {
                "type": "python",
                "inputs": ["app"],
                "function": "tags:tag",
                "path": str(tmp_path / "user"),
                "mode": "event",
            },
            "mask": {"type": "redact", "inputs": ["py"]},
            "cluster": {"type": "modify", "inputs": ["mask"], "static": {"cluster.name": "eu"}},
        },
        "sinks": {"out": {"type": "file", "inputs": ["cluster"], "path": str(out)}},
    }
    cfg = write_config(tmp_path / "kubelogs.yaml", data)
    with Agent(cfg, tmp_path / "agent.log") as agent:
        wait_for(lambda: len(read_docs(out)) >= 3, what="three documents")
        assert agent.stop() == 0, agent.stderr()
    docs = read_docs(out)
    assert [d["message"] for d in docs] == [
        "login [REDACTED] ok",
        "boom",
        "GET https://u:[REDACTED]@db.local/x",
    ]
    assert [d.get("len") for d in docs] == [24, None, 31]  # measured before redaction
    assert docs[1]["log"]["flags"] == ["transform_error"]
    assert {d["cluster"]["name"] for d in docs} == {"eu"}
    assert "user bug" in agent.stderr()
