"""`kubelogs demo`: the first thing a new user runs.

Synthetic pods write realistic logs (JSON, access logs, Java stack traces, lines split by
the runtime) into a node-style tree in a directory of their own, rotating kubelet-style;
the real pipeline (`kubernetes_logs` -> `local` store) reads them; a status view shows
lines written, read and stored, and per-namespace counts; then example `kubelogs search`
commands that work against that store. Ctrl-C (or `--duration`) stops the writers, lets
the agent drain what was written, and stops it cleanly; the store is kept for searching.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

EXAMPLES = [
    ("the newest 20 lines", "--limit 20"),
    ("Java stack traces", "'NullPointerException or SQLTransientConnectionException'"),
    ("one namespace, a phrase", "'kubernetes.namespace:payments and \"payment authorized\"'"),
    ("errors on stderr, counted", "--count 'stream:stderr'"),
    ("follow new errors live", "--follow 'ERROR'"),
]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run synthetic pods and the real pipeline into a local store")
    p.add_argument("--dir", help="where the node tree and the store go (default: a new temp dir)")
    p.add_argument("--rate", type=float, default=200.0, help="lines per second (default 200)")
    p.add_argument("--containers", type=int, default=6, help="containers writing (default 6)")
    p.add_argument("--duration", help="stop after this long (e.g. 30s); default: until Ctrl-C")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from kubelogs.config.unit_parsers import parse_duration

    try:
        duration = parse_duration(args.duration) if args.duration else None
    except ValueError as exc:
        print(f"error: --duration: {exc}", file=sys.stderr)
        return 1
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="kubelogs-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    from kubelogs.telemetry.logging import setup_logging

    setup_logging("warning", "console")
    return asyncio.run(_demo(base, args.rate, args.containers, duration))


def _config(base: Path) -> Any:
    from kubelogs.config.loader import config_from_data

    data = {
        "data_dir": str(base / "data"),
        "node_name": "demo-node",
        "api": {"enabled": False},
        "sources": {
            "containers": {
                "type": "kubernetes_logs",
                "include": [str(base / "node/var/log/containers/*.log")],
                "glob_interval": "500ms",
                "rotate_wait": "1s",
            }
        },
        "sinks": {
            "store": {
                "type": "local",
                "inputs": ["containers"],
                "path": str(base / "store"),
                "flush_interval": "500ms",
            }
        },
    }
    return config_from_data(data, "<demo config>")


async def _demo(base: Path, rate: float, containers: int, duration: float | None) -> int:
    import asyncio

    from kubelogs.pipeline.runner import build_pipeline, run_pipeline
    from kubelogs.testing.generate import run_live

    tree = base / "node"
    store = base / "store"
    stop_writing = threading.Event()
    manifest: dict[str, Any] = {}

    def nap(seconds: float) -> None:
        stop_writing.wait(seconds)

    def write() -> None:
        m = run_live(
            tree,
            rate=rate,
            duration=duration if duration is not None else 365 * 86400.0,
            containers=containers,
            node="demo-node",
            rotate_size=256 * 1024,
            should_stop=stop_writing.is_set,
            sleep=nap,
        )
        manifest["records"] = m.records
        manifest["lines"] = m.lines

    writer = threading.Thread(target=write, name="demo-writer", daemon=True)
    pipeline = build_pipeline(_config(base))
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted.set)
    writer.start()
    runner = asyncio.create_task(run_pipeline(pipeline), name="demo-pipeline")
    view = _StatusView(store, base)
    started = time.monotonic()
    try:
        while not interrupted.is_set() and not runner.done():
            if duration is not None and time.monotonic() - started >= duration:
                break
            view.update(_sent(pipeline))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(interrupted.wait(), 1.0)
        # Stop writing, then let the agent read what was written before stopping it.
        stop_writing.set()
        await asyncio.to_thread(writer.join, 30)
        expected = manifest.get("records", 0)
        deadline = time.monotonic() + 30
        # Polls a counter: there is no event to await for "the sink caught up".
        while _sent(pipeline) < expected and time.monotonic() < deadline and not runner.done():  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        pipeline.request_stop()
        await runner
    finally:
        view.close()
    stored = _sent(pipeline)
    print(
        f"\nWrote {manifest.get('records', 0)} events ({manifest.get('lines', 0)} lines); "
        f"stored {stored} in {store}\n"
    )
    print("Try these (the store stays until you delete it):")
    prefix = _command_prefix()
    for what, q in EXAMPLES:
        print(f"  # {what}\n  {prefix} search --store {store} {q}")
    print(f"\nThe node log tree is in {tree}; rm -rf {base} removes everything.")
    return 0


def _command_prefix() -> str:
    """How the user can run kubelogs from their shell: under `uv run` the virtual
    environment is not on their PATH, so the examples say `uv run kubelogs`."""
    import os

    return "uv run kubelogs" if os.environ.get("UV_RUN_RECURSION_DEPTH") else "kubelogs"


def _sent(pipeline: Any) -> int:
    value = pipeline.metrics.registry.get_sample_value(
        "kubelogs_component_sent_events_total",
        {"component_id": "store", "component_kind": "sink", "component_type": "local"},
    )
    return int(value or 0)


class _StatusView:
    """Lines read and stored, per namespace; a live table on a terminal, plain lines
    otherwise."""

    def __init__(self, store: Path, base: Path) -> None:
        self.store = store
        self.tty = sys.stdout.isatty()
        self._live: Any = None
        self._last_plain = 0.0
        print(f"kubelogs demo: synthetic pods are writing logs under {base / 'node'}")
        print("Press Ctrl-C to stop.\n")

    def _per_namespace(self) -> dict[str, int]:
        from kubelogs.store.errors import StoreError
        from kubelogs.store.reader import StoreReader
        from kubelogs.testing.generate import NAMESPACES

        try:
            with StoreReader(self.store) as reader:
                return {ns: reader.count(f"kubernetes.namespace:{ns}") for ns in NAMESPACES}
        except (StoreError, OSError):
            return {}

    def update(self, stored: int) -> None:
        counts = self._per_namespace()
        if self.tty:
            from rich.live import Live
            from rich.table import Table

            table = Table(title=f"kubelogs demo: {stored} events stored")
            table.add_column("namespace")
            table.add_column("events", justify="right")
            for ns, n in counts.items():
                table.add_row(ns, str(n))
            if self._live is None:
                self._live = Live(table, refresh_per_second=2)
                self._live.start()
            else:
                self._live.update(table)
        elif time.monotonic() - self._last_plain >= 5:
            self._last_plain = time.monotonic()
            per_ns = ", ".join(f"{ns}={n}" for ns, n in counts.items() if n)
            print(f"stored {stored} events ({per_ns})", flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
