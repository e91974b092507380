"""The aggregator's HTTP intake end to end: `kubelogs run` with an `http` source and a
disk-buffered local store, fed by `HttpHandler` in a child process; the aggregator is
restarted (SIGTERM, then kill -9) while records flow, and every record is stored exactly
once (the handler's event ids make resends recognisable). ``KUBELOGS_HANDLER_RECORDS``
sets the number of records (default 20,000; the issue's figure is 100,000)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

from support.agent import Agent, write_config
from support.intake import free_port
from support.store_probe import stored_count, stored_messages
from support.waiting import wait_for

RECORDS = int(os.environ.get("KUBELOGS_HANDLER_RECORDS", "20000"))


def test_handler_in_a_child_process_through_aggregator_restarts(tmp_path: Path) -> None:
    port = free_port()
    store = tmp_path / "store"
    cfg = write_config(
        tmp_path / "aggregator.yaml",
        {
            "data_dir": str(tmp_path / "data"),
            "api": {"listen": "127.0.0.1:0"},
            "shutdown_grace_period": "10s",
            "sources": {
                "intake": {
                    "type": "http",
                    "address": f"127.0.0.1:{port}",
                    "auth": {"bearer_token": "${INTAKE_TOKEN}"},
                }
            },
            "sinks": {
                "store": {
                    "type": "local",
                    "inputs": ["intake"],
                    "path": str(store),
                    "flush_interval": "100ms",
                    "buffer": {"type": "disk", "max_size": "64MiB"},
                }
            },
        },
    )
    env = {"INTAKE_TOKEN": "s3cret"}

    app = textwrap.dedent(
        f"""
        import logging, sys
        from kubelogs.handlers import HttpHandler
        h = HttpHandler("http://127.0.0.1:{port}/app", token="s3cret", max_backoff=0.5,
                        queue_size={RECORDS})
        log = logging.getLogger("app")
        log.addHandler(h)
        log.setLevel(logging.INFO)
        for i in range({RECORDS}):
            log.info("record %d", i, extra={{"n": i}})
            if i % 500 == 0:
                h.flush(0)  # let the sender catch up a little; never blocks long
        ok = h.flush(120)
        print(h.acked, h.dropped, h.errors, ok)
        sys.exit(0 if ok and h.dropped == 0 else 1)
        """
    )
    agg = Agent(cfg, tmp_path / "agg1.log", env=env).start()
    agg.wait_ready()
    child = subprocess.Popen(
        [sys.executable, "-c", app], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: stored_count(store) > RECORDS // 5, timeout=120, what="a fifth stored")
        assert 0 == agg.stop(), agg.stderr()
        agg = Agent(cfg, tmp_path / "agg2.log", env=env).start()
        wait_for(lambda: stored_count(store) > RECORDS // 2, timeout=120, what="half stored")
        agg.kill9()
        agg = Agent(cfg, tmp_path / "agg3.log", env=env).start()
        out, err = child.communicate(timeout=300)
        assert 0 == child.returncode, (out, err)
        wait_for(lambda: stored_count(store) >= RECORDS, timeout=120, what="every record stored")
        assert 0 == agg.stop(), agg.stderr()
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
        if agg.proc is not None and agg.proc.poll() is None:
            agg.kill9()
    got = Counter(stored_messages(store))
    assert [] == [m for m, c in got.items() if c != 1]
    assert {f"record {i}" for i in range(RECORDS)} == set(got)
