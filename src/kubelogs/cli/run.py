"""`kubelogs run [-c FILE]`: run the pipeline until SIGTERM/SIGINT, then drain and exit 0."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import TYPE_CHECKING, Any

from kubelogs.config.errors import ConfigError, ConfigInvalid

log = logging.getLogger("kubelogs")

if TYPE_CHECKING:
    import asyncio  # imported when a command runs: `kubelogs search` starts faster


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the pipeline described by a config file")
    p.add_argument(
        "-c",
        "--config",
        help="config file (default: $KUBELOGS_CONFIG, then /etc/kubelogs/kubelogs.yaml, "
        "then the built-in default)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from kubelogs.config.loader import load_effective_config
    from kubelogs.telemetry.logging import setup_logging

    try:
        cfg = load_effective_config(args.config)
    except ConfigInvalid as exc:
        print(f"{exc.source}: {len(exc.problems)} problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    setup_logging(cfg.root.log.level, cfg.root.log.format)
    from concurrent.futures import ThreadPoolExecutor

    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(thread_name_prefix="kubelogs-io")
    loop.set_default_executor(executor)
    try:
        rc = loop.run_until_complete(serve(cfg))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        rc = 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        rc = 2
    _exit_even_if_a_writer_is_stuck(loop, executor, rc)
    return rc


def _exit_even_if_a_writer_is_stuck(
    loop: asyncio.AbstractEventLoop, executor: Any, rc: int
) -> None:
    """After the grace period a sink thread may still be blocked in a write (a pipe that
    nobody reads, a hung NFS mount). Checkpoints are already saved at this point, so the
    process exits instead of waiting for that thread forever (which is what both
    `loop.shutdown_default_executor()` and the interpreter's exit would do)."""
    import os
    import threading

    closer = threading.Thread(target=executor.shutdown, kwargs={"wait": True}, daemon=True)
    closer.start()
    closer.join(5)
    if closer.is_alive():
        log.warning("a writer thread is still blocked after shutdown; exiting anyway")
        logging.shutdown()
        sys.stderr.flush()
        os._exit(rc)
    loop.close()


async def serve(cfg: object) -> int:
    import asyncio

    from kubelogs.config.loader import Config
    from kubelogs.pipeline.runner import build_pipeline, run_pipeline
    from kubelogs.telemetry.api import ApiServer

    assert isinstance(cfg, Config)
    pipeline = build_pipeline(cfg)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, pipeline.request_stop)
    api = None
    if cfg.root.api.enabled:
        api = ApiServer(cfg.root.api.listen, pipeline.metrics, lambda: pipeline.ready)
        try:
            await api.start()
        except OSError as exc:
            raise OSError(
                f"api.listen: cannot listen on {cfg.root.api.listen}: {exc.strerror}"
            ) from None
    log.info(
        "kubelogs running: %d components, data in %s%s",
        len(pipeline.nodes),
        cfg.root.data_dir,
        f", API on {api.host}:{api.port}" if api else "",
    )
    try:
        await run_pipeline(pipeline)
    finally:
        if api is not None:
            await api.stop()
        store = pipeline.shared.get("checkpoints")
        close = getattr(store, "close", None)
        if close is not None:
            close()
    log.info("kubelogs stopped cleanly")
    return 0
