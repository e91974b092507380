"""`kubelogs demo`: the first thing a new user runs.

Synthetic pods write realistic logs (JSON, access logs, Java stack traces, lines split by
the runtime) into a node-style tree in a directory of their own, rotating kubelet-style;
the real pipeline (`kubernetes_logs` with ``multiline: java`` and ``parser: json`` ->
`local` store) reads them: a stack trace is stored as one event, and a JSON line's
fields (its level normalised into ``log.level``) are searchable. The store's path and
example `kubelogs search` commands are printed at the start, so they can be tried while
the pods write (``--follow`` included), and again at the end; a status view shows lines
written, events stored, and per-namespace counts. Ctrl-C (or `--duration`) stops the writers, lets
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
    ("the newest 20 events", "-n 20"),
    ("Java stack traces, each one event (multiline: java)", "-n 2 NullPointerException"),
    ("one namespace, a phrase", "'kubernetes.namespace:payments and \"payment authorized\"'"),
    ("errors by their parsed level (parser: json), counted", "--count level:error"),
    ("a parsed field, compared", "-n 5 'http.status >= 500'"),
    ("follow new errors live (Ctrl-C to stop)", "--follow 'level:error or stream:stderr'"),
]
"""(what it shows, arguments of `kubelogs search`): printed when the demo starts, so
that they can be tried (``--follow`` too) while the pods write, and again at the end."""

EVENTS_VS_LINES = (
    "Lines are what the containers wrote to their log files; events are what is stored: "
    "one per message, after the lines the runtime split (messages over 16 KiB) are "
    "joined again, and a Java stack trace is one event with its lines joined "
    "(multiline: java). JSON lines are parsed into fields beside the message "
    "(parser: json), their level normalised into log.level; other lines keep their "
    "message and are flagged parse_error."
)
SEED = 42
"""The generator's seed: the demo's pods (and so the `kubelogs logs` example) are the
same every run."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run synthetic pods and the real pipeline into a local store",
        description=(
            "Synthetic pods write logs into DIR/node, the real pipeline stores them in "
            "DIR/store, and example searches are printed. DIR/node is replaced only if a "
            "demo or `kubelogs generate` wrote it (it holds a .kubelogs-generated file); "
            "anything else is refused."
        ),
    )
    p.add_argument("--dir", help="where the node tree and the store go (default: a new temp dir)")
    p.add_argument("--rate", type=float, default=200.0, help="lines per second (default 200)")
    p.add_argument("--containers", type=int, default=6, help="containers writing (default 6)")
    p.add_argument("--duration", help="stop after this long (e.g. 30s); default: until Ctrl-C")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from kubelogs.config.unit_parsers import parse_duration
    from kubelogs.testing.generate import TreeRootError, check_root

    err = sys.stderr
    try:
        duration = parse_duration(args.duration) if args.duration else None
    except ValueError as exc:
        print(f"kubelogs demo: --duration: {exc}", file=err)
        return 1
    if args.containers < 1:
        print(f"kubelogs demo: --containers {args.containers}: must be 1 or more", file=err)
        return 1
    if not args.rate > 0:  # also NaN
        print(f"kubelogs demo: --rate {args.rate:g}: must be more than 0 lines/s", file=err)
        return 1
    if args.dir:
        base = Path(args.dir)
        if base.exists() and not base.is_dir():
            print(f"kubelogs demo: --dir {base}: is not a directory", file=err)
            return 1
        try:
            if base.is_dir():  # before the pipeline starts: a refusal touches nothing
                check_root(base / "node")
        except TreeRootError as exc:
            print(f"kubelogs demo: --dir {base}: {exc}", file=err)
            return 1
        try:
            base.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"kubelogs demo: --dir {base}: {exc.strerror}", file=err)
            return 1
    else:
        base = Path(tempfile.mkdtemp(prefix="kubelogs-demo-"))
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
                "multiline": "java",
                "parser": "json",
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
    written = _Written()
    failure: list[BaseException] = []

    def nap(seconds: float) -> None:
        stop_writing.wait(seconds)

    def write() -> None:
        try:
            m = run_live(
                tree,
                rate=rate,
                duration=duration if duration is not None else 365 * 86400.0,
                containers=containers,
                seed=SEED,
                node="demo-node",
                rotate_size=256 * 1024,
                should_stop=stop_writing.is_set,
                sleep=nap,
                progress=written.update,
            )
        except Exception as exc:  # reported by the main thread, which then stops
            failure.append(exc)
            return
        manifest["events"] = m.events
        manifest["lines"] = m.lines

    writer = threading.Thread(target=write, name="demo-writer", daemon=True)
    pipeline = build_pipeline(_config(base))
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted.set)
    print(f"kubelogs demo: synthetic pods are writing logs under {tree}")
    print(f"The pipeline stores them in {store}; try these in another terminal now:")
    _print_examples(store, containers)
    print(f"\n{EVENTS_VS_LINES}")
    print("Press Ctrl-C to stop.\n", flush=True)
    writer.start()
    runner = asyncio.create_task(run_pipeline(pipeline), name="demo-pipeline")
    view = _StatusView(store)
    started = time.monotonic()
    try:
        while not interrupted.is_set() and not runner.done() and writer.is_alive():
            if duration is not None and time.monotonic() - started >= duration:
                break
            view.update(written.lines, _sent(pipeline))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(interrupted.wait(), 1.0)
        # Stop writing, then let the agent read what was written before stopping it.
        stop_writing.set()
        await asyncio.to_thread(writer.join, 30)
        expected = manifest.get("events", 0)
        deadline = time.monotonic() + 30
        # Polls a counter: there is no event to await for "the sink caught up".
        while _sent(pipeline) < expected and time.monotonic() < deadline and not runner.done():  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        pipeline.request_stop()
        await runner
    finally:
        view.close()
    if failure:
        print(f"kubelogs demo: the log writer failed: {failure[0]}", file=sys.stderr)
        return 2
    stored = _sent(pipeline)
    print(
        f"\nWrote {manifest.get('lines', 0)} lines ({manifest.get('events', 0)} events); "
        f"stored {stored} events in {store}\n"
    )
    print("Try these (the store stays until you delete it):")
    _print_examples(store, containers)
    print(f"\nThe node log tree is in {tree}; rm -rf {base} removes everything.")
    print(f"Explore it in the browser:\n  {_command_prefix()} ui --store {store}")
    return 0


class _Written:
    """Lines and events the writer thread has written so far (ints: assignment is
    atomic, and the status only needs a recent value)."""

    def __init__(self) -> None:
        self.lines = 0
        self.events = 0

    def update(self, lines: int, events: int) -> None:
        self.lines, self.events = lines, events


def _print_examples(store: Path, containers: int) -> None:
    prefix = _command_prefix()
    for what, q in EXAMPLES:
        print(f"  # {what}\n  {prefix} search --store {store} {q}")
    pod = _first_pod(containers)
    print(
        f"  # one pod's logs, like kubectl logs (also after the pod is gone)\n"
        f"  {prefix} logs --store {store} {pod} --tail 20"
    )


def _first_pod(containers: int) -> str:
    """``namespace/pod`` of a pod the demo runs (the generator's plan for `SEED`)."""
    import random

    from kubelogs.testing.generate import plan_containers

    first = plan_containers(random.Random(SEED), containers, 0)[0]
    return f"{first.namespace}/{first.pod}"


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
    """Lines written and events stored, per namespace; a live table on a terminal,
    plain lines otherwise (every 5 s, once something is stored)."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.tty = sys.stdout.isatty()
        self._live: Any = None
        self._last_plain = 0.0

    def _per_namespace(self) -> dict[str, int]:
        from kubelogs.store.errors import StoreError
        from kubelogs.store.reader import StoreReader
        from kubelogs.testing.generate import NAMESPACES

        try:
            with StoreReader(self.store) as reader:
                return {ns: reader.count(f"kubernetes.namespace:{ns}") for ns in NAMESPACES}
        except (StoreError, OSError):
            return {}

    def update(self, lines: int, stored: int) -> None:
        counts = {ns: n for ns, n in self._per_namespace().items() if n}
        if self.tty:
            from rich.live import Live
            from rich.table import Table

            title = f"kubelogs demo: {lines} lines written, {stored} events stored"
            table = Table(title=title)
            table.add_column("namespace")
            table.add_column("events", justify="right")
            for ns, n in counts.items():
                table.add_row(ns, str(n))
            if self._live is None:
                self._live = Live(table, refresh_per_second=2)
                self._live.start()
            else:
                self._live.update(table)
        elif stored and time.monotonic() - self._last_plain >= 5:
            self._last_plain = time.monotonic()
            per_ns = ", ".join(f"{ns} {n}" for ns, n in counts.items())
            print(f"{lines} lines written, {stored} events stored: {per_ns}", flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
