"""`kubelogs run [-c FILE]`: run the pipeline until SIGTERM/SIGINT, then drain and exit 0."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

log = logging.getLogger("kubelogs")

if TYPE_CHECKING:
    import asyncio  # imported when a command runs: `kubelogs search` starts faster


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="run the pipeline described by a config file",
        description="Run the pipeline (sources -> transforms -> sinks) until SIGTERM or "
        "SIGINT, then drain for up to `shutdown_grace_period`, save checkpoints and exit 0.",
        epilog="examples:\n"
        "  kubelogs run -c /etc/kubelogs/kubelogs.yaml\n"
        "  kubelogs run --log-format json        # built-in default config, JSON logs\n"
        "  kubelogs run -c stdout.yaml | head -1  # exits quietly, 0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-c",
        "--config",
        help="config file (default: $KUBELOGS_CONFIG, then /etc/kubelogs/kubelogs.yaml, "
        "then the built-in default)",
    )
    p.add_argument(
        "--log-format",
        choices=["console", "json"],
        help="format of kubelogs' own logs on stderr; overrides `log.format` "
        "(default: the config's, console)",
    )
    p.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="overrides `log.level` (default: the config's, info)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the config, run the pipeline, and always leave the event loop tidy.

    Exceptions propagate to `kubelogs.cli.main`, which prints them as one line; the
    only exception is a writer thread stuck after shutdown, where the process must
    exit without waiting for it and therefore reports the error itself.
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from kubelogs.cli import allocator, errors
    from kubelogs.config.loader import load_effective_config
    from kubelogs.telemetry.logging import setup_logging

    allocator.tune()
    data = getattr(args, "config_data", None)  # a config built by `kubelogs sidecar`
    if data is None:
        cfg = load_effective_config(args.config)
    else:
        from kubelogs.config.loader import config_from_data

        cfg = config_from_data(data, "<kubelogs sidecar>")
    debug = errors.debug_requested(bool(getattr(args, "debug", False)))
    setup_logging(
        args.log_level or cfg.root.log.level,
        args.log_format or cfg.root.log.format,
        tracebacks=debug,
    )

    loop = asyncio.new_event_loop()
    loop.set_exception_handler(_exception_handler(debug))
    executor = ThreadPoolExecutor(thread_name_prefix="kubelogs-io")
    loop.set_default_executor(executor)
    error: BaseException | None = None
    rc = 0

    def apply_logging(new: Any) -> None:
        """A reloaded config's log settings; the command line's flags still win."""
        setup_logging(
            args.log_level or new.root.log.level,
            args.log_format or new.root.log.format,
            tracebacks=debug,
        )

    try:
        rc = loop.run_until_complete(serve(cfg, args.config, apply_logging))
    except SystemExit:
        raise
    except BaseException as exc:
        error = exc
    _cancel_leftover_tasks(loop)
    if error is not None:
        rc = 0 if errors.is_broken_pipe(error) else errors.exit_code(error)
    if not _shutdown_executor(executor):
        # A sink thread is still blocked in a write (a pipe nobody reads, a hung NFS
        # mount). Checkpoints are saved at this point, so the process exits instead of
        # waiting for that thread forever (as `shutdown_default_executor()` and the
        # interpreter's exit would).
        if error is not None and rc != 0:
            errors.report(error, command="run", debug=debug)
        log.warning("a writer thread is still blocked after shutdown; exiting anyway")
        logging.shutdown()
        sys.stderr.flush()
        if error is not None and rc == 0:
            errors.silence_stdout()
        os._exit(rc)
    loop.close()
    if error is not None:
        raise error
    return rc


def _cancel_leftover_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel and await whatever is still pending (as `asyncio.run` does), so that no
    "Task was destroyed but it is pending!" is printed when the loop is collected."""
    import asyncio

    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=5))
    for t in tasks:
        if t.done() and not t.cancelled():
            t.exception()  # retrieved: cancelled siblings' errors are not news


def _shutdown_executor(executor: Any) -> bool:
    """Shut the I/O threads down; False if one is still blocked after 5 s."""
    import threading

    closer = threading.Thread(target=executor.shutdown, kwargs={"wait": True}, daemon=True)
    closer.start()
    closer.join(5)
    return not closer.is_alive()


def _exception_handler(
    debug: bool,
) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """asyncio's default handler prints a traceback for a future nobody awaited; here it
    is one warning line (the traceback with --debug)."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if debug:
            loop.default_exception_handler(context)
            return
        exc = context.get("exception")
        message = str(context.get("message", "unexpected error in the event loop"))
        # A task still pending when the loop is collected is a shutdown leftover (its
        # data is read again on the next start): not worth an operator's attention.
        level = logging.DEBUG if message.startswith("Task was destroyed") else logging.WARNING
        log.log(level, "%s%s", message, f": {exc!r}" if exc is not None else "")

    return handle


class ListenError(Exception):
    """The API address cannot be bound (in use, not an address of this host)."""


async def serve(
    cfg: object,
    explicit_config: str | None = None,
    apply_logging: Callable[[Any], None] | None = None,
) -> int:
    """Run the pipeline (reloaded on SIGHUP or a changed file), with the API beside it."""
    import asyncio

    from kubelogs.config.loader import Config, load_effective_config, resolve_config_path
    from kubelogs.pipeline.reload import Supervisor
    from kubelogs.pipeline.tap import TapHub
    from kubelogs.telemetry.api import ApiServer
    from kubelogs.telemetry.metrics import Metrics

    assert isinstance(cfg, Config)
    metrics = Metrics()
    taps = TapHub(metrics)
    supervisor = Supervisor(
        cfg,
        lambda: load_effective_config(explicit_config),
        metrics=metrics,
        taps=taps,
        watch_path=resolve_config_path(explicit_config),
        on_settings=apply_logging,
    )
    first = supervisor.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, supervisor.request_stop)
    loop.add_signal_handler(signal.SIGHUP, supervisor.request_reload)
    api = None
    if cfg.root.api.enabled:
        api = ApiServer(cfg.root.api.listen, metrics, lambda: supervisor.ready, taps)
        try:
            await api.start()
        except (OSError, OverflowError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            listen = cfg.root.api.listen
            raise ListenError(f"api.listen: cannot listen on {listen}: {reason}") from None
    log.info(
        "kubelogs running: %d components from %s, data in %s%s",
        len(first.nodes),
        cfg.source,  # which config: `run` without -c may not use the file you think
        cfg.root.data_dir,
        f", API on {api.host}:{api.port}" if api else "",
    )
    try:
        pipeline = await supervisor.run()
    finally:
        taps.close()
        if api is not None:
            await api.stop()
    if pipeline.grace_expired:
        log.info("kubelogs stopped; draining was cut short by shutdown_grace_period")
    else:
        log.info("kubelogs stopped cleanly")
    return 0
