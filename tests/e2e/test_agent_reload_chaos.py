"""Reloads of a running `kubelogs run` attacked at their worst moments: SIGTERM while a
swap is in progress, SIGHUP storms, and `kill -9` at random moments during reloads,
with every line checked exactly once afterwards.

"During a swap" is hit deterministically: a `forward` sink sends to a server (in the
test) that answers acks only when released, so the old sink cannot finish draining;
the agent logs ``reload: draining <components>`` when a swap begins.

`KUBELOGS_RELOAD_CHAOS_CYCLES` (default 3) sets the number of `kill -9`s,
`KUBELOGS_RELOAD_STORM_ROUNDS` (default 6) the number of SIGHUP bursts.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
import yaml

from support.agent import FAST_TAIL, Agent, count_lines, read_docs, write_config
from support.line_writer import LineWriter as Writer
from support.store_probe import stored_count, stored_docs
from support.waiting import wait_for

CYCLES = int(os.environ.get("KUBELOGS_RELOAD_CHAOS_CYCLES", "3"))
STORM_ROUNDS = int(os.environ.get("KUBELOGS_RELOAD_STORM_ROUNDS", "6"))


class HeldReceiver:
    """A Fluentd forward server that answers a chunk's ack only once `release`d: a
    `forward` sink sending to it cannot drain until then."""

    def __init__(self) -> None:
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen()
        self.port = int(self._server.getsockname()[1])
        self.released = threading.Event()
        self.chunks = 0
        self._closing = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                unpacker.feed(data)
                for message in unpacker:
                    option = message[-1] if isinstance(message[-1], dict) else {}
                    self.chunks += 1
                    self.released.wait()
                    if "chunk" in option:
                        try:
                            conn.sendall(msgpack.packb({"ack": option["chunk"]}))
                        except OSError:
                            return

    def close(self) -> None:
        self._closing.set()
        self.released.set()
        self._server.close()


def assert_exactly_once(messages: list[str], written: int) -> None:
    got = Counter(messages)
    expected = {f"line {i:07d}" for i in range(written)}
    missing = expected - set(got)
    duplicated = {m: n for m, n in got.items() if n > 1}
    assert not missing, f"{len(missing)} lines lost, e.g. {sorted(missing)[:3]}"
    assert not duplicated, f"{len(duplicated)} lines duplicated, e.g. {list(duplicated)[:3]}"
    assert set(got) == expected


def test_sigterm_while_a_swap_drains_stops_cleanly_and_a_restart_repeats_nothing(
    tmp_path: Path,
) -> None:
    """The `forward` sink changes; its old instance cannot drain (the server holds its
    acks) when SIGTERM arrives; the acks are then released. The agent exits 0, cleanly
    and without waiting out the grace period, and after a restart the file sink beside
    it has every line exactly once."""
    receiver = HeldReceiver()
    log_file, out = tmp_path / "app.log", tmp_path / "out.ndjson"
    lines = [f"line {i:07d}" for i in range(200)]
    log_file.write_text("".join(f"{m}\n" for m in lines[:100]))
    data: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "node_name": "node-test",
        "api": {"listen": "127.0.0.1:0"},
        "shutdown_grace_period": "30s",
        "sources": {"logs": {"type": "file", "paths": [str(log_file)], **FAST_TAIL}},
        "sinks": {
            "out": {"type": "file", "inputs": ["logs"], "path": str(out)},
            "fwd": {
                "type": "forward",
                "inputs": ["logs"],
                "servers": [f"127.0.0.1:{receiver.port}"],
                "ack_timeout": "60s",
            },
        },
    }
    cfg = write_config(tmp_path / "kubelogs.yaml", data)
    try:
        with Agent(cfg, tmp_path / "agent.log") as agent:
            agent.wait_ready()
            wait_for(lambda: count_lines(out) == 100 and receiver.chunks > 0, what="delivery")
            data["sinks"]["fwd"]["ack_timeout"] = "61s"
            write_config(cfg, data)
            assert agent.proc is not None
            agent.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "reload: draining fwd" in agent.stderr(), what="the swap")
            agent.proc.send_signal(signal.SIGTERM)
            receiver.released.set()
            began = time.monotonic()
            assert 0 == agent.wait(25)
            took = time.monotonic() - began
        log = agent.stderr()
        assert "kubelogs stopped cleanly" in log, log[-2000:]
        assert took < 20, took  # well within the 30s grace period
        with open(log_file, "a") as f:
            f.writelines(f"{m}\n" for m in lines[100:])
        with Agent(cfg, tmp_path / "agent2.log") as agent:
            agent.wait_ready()
            wait_for(lambda: count_lines(out) >= 200, what="the lines after the restart")
            assert 0 == agent.stop()
    finally:
        receiver.close()
    assert_exactly_once([d["message"] for d in read_docs(out)], 200)


def _store_config(tmp: Path, log_file: Path, store: Path, variant: int) -> dict[str, Any]:
    """file source -> [filter] -> local store; `variant` picks which component changes."""
    data: dict[str, Any] = {
        "data_dir": str(tmp / "data"),
        "node_name": "node-test",
        "api": {"listen": "127.0.0.1:0"},
        "shutdown_grace_period": "20s",
        "sources": {"logs": {"type": "file", "paths": [str(log_file)], **FAST_TAIL}},
        "sinks": {
            "store": {
                "type": "local",
                "inputs": ["logs"],
                "path": str(store),
                "flush_interval": f"{100 + variant % 3}ms",
            },
            "copy": {"type": "file", "inputs": ["logs"], "path": str(tmp / "copy.ndjson")},
        },
    }
    kind = variant % 4
    if kind == 1:
        data["transforms"] = {
            "keep": {"type": "filter", "inputs": ["logs"], "condition": f"not r{variant}x"}
        }
        data["sinks"]["store"]["inputs"] = ["keep"]
    elif kind == 2:
        data["sources"]["logs"]["poll_interval"] = f"{20 + variant % 7}ms"
    elif kind == 3:
        data["sinks"]["copy"]["fsync"] = True
    return data


def _draining(log: str) -> int:
    """Reloads that began: a swap (``reload: draining``) or a whole-pipeline restart."""
    return log.count("reload: draining") + log.count("draining the running pipeline")


def test_kill9_at_random_moments_of_reloads_keeps_every_line_exactly_once_in_the_store(
    tmp_path: Path,
) -> None:
    """A writer appends all along; each cycle starts the agent, sends SIGHUPs with a
    changed config (the store sink, a transform, the source, another sink) and
    `kill -9`s it at a random moment: right after the signal, once the swap began, or
    once it was applied. The local store drops what a restart resends: every line is
    stored exactly once."""
    rng = random.Random(int(os.environ.get("KUBELOGS_RELOAD_CHAOS_SEED", "7")))
    log_file, store = tmp_path / "app.log", tmp_path / "store"
    log_file.touch()
    cfg = tmp_path / "kubelogs.yaml"
    variant = 0
    write_config(cfg, _store_config(tmp_path, log_file, store, variant))
    moments = []
    with Writer(log_file) as writer:
        for cycle in range(CYCLES):
            agent = Agent(cfg, tmp_path / f"agent{cycle}.log").start()
            try:
                agent.wait_ready()
                before = stored_count(store)
                wait_for(lambda b=before: stored_count(store) > b, timeout=60, what="progress")
                for _ in range(rng.randint(1, 3)):
                    variant += 1
                    write_config(cfg, _store_config(tmp_path, log_file, store, variant))
                    moment = rng.choice(["at once", "swap begun", "applied"])
                    seen = _draining(agent.stderr())
                    done = agent.stderr().count("configuration reloaded")
                    assert agent.proc is not None
                    agent.proc.send_signal(signal.SIGHUP)
                    if moment == "swap begun":
                        wait_for(
                            lambda s=seen, a=agent: _draining(a.stderr()) > s,
                            what="the swap",
                        )
                    elif moment == "applied":
                        wait_for(
                            lambda d=done, a=agent: a.stderr().count("configuration reloaded") > d,
                            what="the reload",
                        )
                    moments.append(moment)
            finally:
                agent.kill9()
        agent = Agent(cfg, tmp_path / "agent-last.log").start()
        try:
            agent.wait_ready()
            wait_for(lambda: stored_count(store) > 0, what="the store")
        except BaseException:
            agent.kill9()
            raise
    written = writer.written
    try:
        wait_for(
            lambda: stored_count(store) >= written, timeout=120, what="every line in the store"
        )
        assert 0 == agent.stop()
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill9()
    assert_exactly_once([d["message"] for d in stored_docs(store)], written)
    copy = Counter(d["message"] for d in read_docs(tmp_path / "copy.ndjson"))
    assert set(copy) == {f"line {i:07d}" for i in range(written)}, moments  # none lost


def test_sighup_storms_apply_the_last_config_and_keep_every_line_exactly_once(
    tmp_path: Path,
) -> None:
    """Bursts of SIGHUPs (three at once, the config rewritten in between; with
    `watch_config` on, each rewrite also triggers a reload of its own) while a file is
    written: the agent settles on the last config, never crashes, and the sink has
    every line exactly once."""
    log_file, out = tmp_path / "app.log", tmp_path / "out.ndjson"
    log_file.touch()
    cfg = tmp_path / "kubelogs.yaml"

    def make(i: int) -> dict[str, Any]:
        data = _store_config(tmp_path, log_file, tmp_path / "store", i)
        data["sinks"]["out"] = {
            "type": "file",
            "inputs": data["sinks"]["store"]["inputs"],
            "path": str(out),
            "fsync": i % 2 == 1,
        }
        data["watch_config"] = True  # file changes reload too, racing the SIGHUPs
        return data

    write_config(cfg, make(0))
    with Agent(cfg, tmp_path / "agent.log") as agent:
        agent.wait_ready()
        with Writer(log_file) as writer:
            for i in range(1, STORM_ROUNDS + 1):
                target = writer.written + 100
                wait_for(lambda t=target: writer.written > t, what="the writer")
                assert agent.proc is not None
                for j in range(3):
                    write_config(cfg, make(3 * i + j))
                    agent.proc.send_signal(signal.SIGHUP)
            # the last config marks itself: a sink that exists only there
            last = yaml.safe_load(yaml.safe_dump(make(3 * STORM_ROUNDS + 3)))
            last["sinks"]["marker"] = {
                "type": "file",
                "inputs": ["logs"],
                "path": str(tmp_path / "marker.ndjson"),
            }
            write_config(cfg, last)
            agent.proc.send_signal(signal.SIGHUP)
            agent.proc.send_signal(signal.SIGHUP)
            wait_for(
                lambda: count_lines(tmp_path / "marker.ndjson") > 0,
                timeout=60,
                what="the last config to run",
            )
        written = writer.written
        wait_for(lambda: count_lines(out) >= written, timeout=60, what="every line")
        assert 0 == agent.stop()
    log = agent.stderr()
    assert "kubelogs stopped cleanly" in log
    assert "Traceback" not in log, log[-3000:]
    assert_exactly_once([d["message"] for d in read_docs(out)], written)
