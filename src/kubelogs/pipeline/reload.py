"""Configuration reload: `SIGHUP`, or a change of the config file with `watch_config: true`.

What a reload does:

1. the file is read and validated exactly as `kubelogs validate` does (types, graph,
   writable paths). A config with problems is refused: every problem is logged and the
   running pipeline is not touched. A config equal to the running one is ignored; one
   that changes no component (log level, grace period, `tests`) is applied in place.
2. otherwise only the components that changed restart, inside the running pipeline
   (pipeline/swap.py: which ones, and the per-edge drain that keeps every line exactly
   once). The others keep running: a file source keeps its open files, read positions
   and multiline groups, a sink its connections and queues; a kept source that feeds a
   changed component is held for the length of the swap (milliseconds: the old
   component's queue drained, the new one built).
3. a partial swap is impossible when `data_dir`, `node_name` or `log.summary_interval`
   changed, or when no component would keep running; then (and when a swap cannot drain
   within `shutdown_grace_period`) the whole pipeline is replaced, and the log says why:
   it drains as on SIGTERM (every batch in flight delivered and acknowledged, sources
   save their checkpoints, bounded by the grace period), and the new pipeline starts
   from those checkpoints.

Either way a successor starts only after its predecessor's batches were all resolved and
its checkpoints written, so a reload neither loses nor duplicates a line (only a drain
cut short by the grace period falls back to at-least-once, as a restart does).

If a changed component cannot be built (a sink's file cannot be opened, a port is
taken), the old versions of the changed components are built again and started in its
place (partial swap), or the previous config is started again (whole restart); the error
is logged and the running configuration stays the previous one.

Watching the file: ConfigMaps update by swapping a `..data` symlink, so an inotify watch
on the file itself would miss the change. The watcher polls `os.stat` of the path
(which follows symlinks to the current target) every second and compares device, inode,
size and mtime; on a difference it compares the content's hash, so a `touch` alone does
not restart anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubelogs.config.errors import ConfigError, ConfigFileError, ConfigInvalid
from kubelogs.config.loader import Config
from kubelogs.pipeline.runner import Pipeline, build_pipeline, run_pipeline
from kubelogs.pipeline.swap import SwapResult, SwapTimeout, plan_swap, swap
from kubelogs.pipeline.tap import TapHub
from kubelogs.telemetry.metrics import Metrics

log = logging.getLogger("kubelogs.reload")

WATCH_INTERVAL = 1.0
"""Seconds between two looks at the config file when `watch_config` is on."""


class Supervisor:
    """Runs one pipeline at a time; replaces it on a valid, changed configuration.

    Error handling: a pipeline that fails (a component crashed) ends `run` with that
    error, as without reloads. A reload that fails to build falls back to the old config.
    """

    def __init__(
        self,
        config: Config,
        load: Callable[[], Config],
        *,
        metrics: Metrics,
        taps: TapHub | None = None,
        watch_path: Path | None = None,
        on_settings: Callable[[Config], None] | None = None,
    ) -> None:
        self.config = config
        self._load = load
        self.metrics = metrics
        self.taps = taps
        self.watch_path = watch_path
        self.on_settings = on_settings
        """Applies process-wide settings of a new config (log level and format)."""
        self.pipeline: Pipeline | None = None
        self.reloads = 0
        """Configurations applied after the first (for tests and the log)."""
        self.refused = 0
        """Reloads refused because the new config was invalid."""
        self._stop = False
        self._reload = asyncio.Event()
        self._collectors = 0
        self.last_swap: SwapResult | None = None
        """The last partial reload's figures (pause of the kept sources, drain time)."""

    @property
    def ready(self) -> bool:
        return self.pipeline is not None and self.pipeline.ready

    def request_stop(self) -> None:
        self._stop = True
        if self.pipeline is not None:
            self.pipeline.request_stop()
        self._reload.set()  # wakes `run` if it waits between pipelines

    def request_reload(self) -> None:
        log.info("reload requested")
        self._reload.set()

    async def run(self) -> Pipeline:
        """Run pipelines until a stop is requested or a pipeline ends; return the last.

        The first build's errors propagate (as without reloads); a reload's do not.
        """
        pipeline = self.pipeline or self._build(self.config)
        watcher = asyncio.create_task(self._watch(), name="config-watch")
        try:
            while True:
                task = asyncio.create_task(run_pipeline(pipeline), name="pipeline")
                while True:
                    new = await self._until_reload(task)
                    if new is None:  # the pipeline ended (stop requested, or an error)
                        self._discard(pipeline)
                        task.result()
                        return pipeline
                    why = await self._try_swap(pipeline, task, new)
                    if why is None:
                        continue  # applied (or the pipeline ended: seen above)
                    break
                log.info("reloading the configuration: draining the running pipeline (%s)", why)
                began = time.monotonic()
                pipeline.request_stop()
                try:
                    await task
                finally:
                    self._discard(pipeline)
                if pipeline.grace_expired:
                    log.warning(
                        "the drain before the reload was cut short by "
                        "shutdown_grace_period; unacknowledged lines are read again"
                    )
                if self._stop:
                    return pipeline
                pipeline = self._rebuild(new, self.config, time.monotonic() - began)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def _try_swap(
        self, pipeline: Pipeline, task: asyncio.Task[None], new: Config
    ) -> str | None:
        """Restart only the changed components (pipeline/swap.py). None when done (or
        when the pipeline ended meanwhile); else why the whole pipeline must restart."""
        plan = plan_swap(self.config, new)
        if isinstance(plan, str):
            return plan
        if not pipeline.ready or pipeline.task_group is None:
            return "the pipeline was still starting"
        swapping = asyncio.create_task(swap(pipeline, new, plan), name="reload-swap")
        await asyncio.wait({swapping, task}, return_when=asyncio.FIRST_COMPLETED)
        if not swapping.done():  # a component failed: `run` ends with its error
            swapping.cancel()
            await asyncio.gather(swapping, return_exceptions=True)
            return None
        try:
            result = swapping.result()
        except SwapTimeout as exc:
            self._abandon(pipeline)
            return f"{exc}; the pipeline is restarted from its checkpoints"
        except Exception as exc:
            log.exception("reload: the partial restart failed")
            self._abandon(pipeline)
            return f"the partial restart failed: {exc}"
        if result.error is not None:
            return None  # the old components run again; swap logged why
        old, self.config = self.config, new
        if self.on_settings is not None:
            self.on_settings(new)
        self.reloads += 1
        log.info(
            "configuration reloaded from %s (%d components; changed: %s; "
            "(re)started or stopped: %s; kept running: %s; drained in %.0f ms, "
            "paused %.0f ms)",
            new.source,
            len(new.components),
            ", ".join(plan.changed),
            ", ".join(plan.region),
            ", ".join(plan.kept),
            result.drained * 1000,
            result.paused * 1000,
        )
        self.last_swap = result
        if old.root.api != new.root.api:
            log.warning("api settings take effect at the next start of kubelogs")
        return None

    @staticmethod
    def _abandon(pipeline: Pipeline) -> None:
        """A swap that cannot finish: cancel everything now (what was in flight is read
        again from the checkpoints, as after a shutdown cut short by the grace period)."""
        pipeline.grace_expired = True
        pipeline.request_stop()
        for t in pipeline.tasks:
            t.cancel()

    def start(self) -> Pipeline:
        """Build the first pipeline now (its errors are start-up errors of `run`)."""
        return self._build(self.config)

    def _build(self, config: Config) -> Pipeline:
        self._collectors = len(self.metrics.collectors)
        pipeline = build_pipeline(config, self.metrics, self.taps)
        self.pipeline = pipeline
        self.config = config
        return pipeline

    def _rebuild(self, new: Config, old: Config, drained_in: float) -> Pipeline:
        """The pipeline of `new`; if it cannot be built, log why and build `old` again."""
        try:
            pipeline = self._build(new)
        except Exception as exc:
            log.error("reload failed, the previous configuration is started again: %s", exc)
            self.metrics.remove_collectors(self._collectors)
            return self._build(old)
        self.reloads += 1
        log.info(
            "configuration reloaded from %s (%d components; changed: %s; drained in %.0f ms)",
            new.source,
            len(new.components),
            ", ".join(_changed_components(old, new)) or "top-level settings only",
            drained_in * 1000,
        )
        if old.root.api != new.root.api:
            log.warning("api settings take effect at the next start of kubelogs")
        return pipeline

    def _discard(self, pipeline: Pipeline | None) -> None:
        """Forget a finished pipeline: its scrape-time gauges and its checkpoint store."""
        self.metrics.remove_collectors(self._collectors)
        if pipeline is None:
            return
        store = pipeline.shared.get("checkpoints")
        close = getattr(store, "close", None)
        if close is not None:
            close()

    async def _until_reload(self, task: asyncio.Task[None]) -> Config | None:
        """Wait for the pipeline to end (None) or for a valid, changed config."""
        while True:
            wake = asyncio.create_task(self._reload.wait())
            try:
                await asyncio.wait({task, wake}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                wake.cancel()
            if task.done() or self._stop:
                if not task.done():
                    await asyncio.wait({task})
                return None
            self._reload.clear()
            new = await asyncio.to_thread(self._try_load)
            if new is None:
                continue
            if not _needs_restart(self.config, new):
                self._apply_in_place(new)
                continue
            return new

    def _apply_in_place(self, new: Config) -> None:
        """A change that touches no component (`log.level`, `shutdown_grace_period`,
        `watch_config`, `tests`): applied to the running pipeline, nothing restarts."""
        old = self.config
        self.config = new
        if self.pipeline is not None:
            self.pipeline.config = new  # the grace period is read from it at stop time
        if self.on_settings is not None:
            self.on_settings(new)
        self.reloads += 1
        log.info(
            "configuration reloaded from %s (no component changed: applied without a restart)",
            new.source,
        )
        if old.root.api != new.root.api:
            log.warning("api settings take effect at the next start of kubelogs")

    def _try_load(self) -> Config | None:
        """The new config if it is valid and differs from the running one."""
        from kubelogs.config.paths import writable_path_problems

        try:
            new = self._load()
            problems = writable_path_problems(new.root.data_dir, new.components)
            if problems:
                raise ConfigInvalid(new.source, problems)
        except ConfigInvalid as exc:
            self.refused += 1
            log.error(
                "reload refused, %s has %d problem(s); the running configuration is kept:\n%s",
                exc.source,
                len(exc.problems),
                "\n".join(exc.problems),
            )
            return None
        except (ConfigFileError, ConfigError) as exc:
            self.refused += 1
            log.error("reload refused (the running configuration is kept): %s", exc)
            return None
        if _same(new, self.config):
            log.info("reload: the configuration has not changed; nothing to do")
            return None
        return new

    async def _watch(self) -> None:
        """Poll the config file while `watch_config` is on (see the module docstring)."""
        path = self.watch_path
        if path is None:
            if self.config.root.watch_config:
                log.warning("watch_config: no config file to watch (built-in default)")
            return
        seen = _signature(path)
        digest = _digest(path)
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            if not self.config.root.watch_config:
                continue
            now = await asyncio.to_thread(_signature, path)
            if now is None or now == seen:
                continue  # missing for a moment while a ConfigMap swaps its symlink
            seen = now
            new_digest = await asyncio.to_thread(_digest, path)
            if new_digest is not None and new_digest != digest:
                digest = new_digest
                log.info("config file %s changed", path)
                self._reload.set()


def _signature(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _digest(path: Path) -> bytes | None:
    try:
        return hashlib.sha256(path.read_bytes()).digest()
    except OSError:
        return None


def _dump(config: Config) -> dict[str, Any]:
    return config.root.model_dump(mode="json")


def _same(a: Config, b: Config) -> bool:
    return _dump(a) == _dump(b)


_RESTART_KEYS = ("data_dir", "node_name", "sources", "transforms", "sinks")


def _needs_restart(old: Config, new: Config) -> bool:
    """Whether `new` changes anything the running components were built from (the
    summary interval too: the summary task reads it once)."""
    a, b = _dump(old), _dump(new)
    if any(a.get(k) != b.get(k) for k in _RESTART_KEYS):
        return True
    if old.inputs != new.inputs or old.node_name != new.node_name:
        return True
    return bool(old.root.log.summary_interval != new.root.log.summary_interval)


def _changed_components(old: Config, new: Config) -> list[str]:
    out = []
    for cid in sorted(set(old.components) | set(new.components)):
        a, b = old.components.get(cid), new.components.get(cid)
        same = a is not None and b is not None and a.model_dump() == b.model_dump()
        if not same or old.inputs.get(cid) != new.inputs.get(cid):
            out.append(cid)
    return out
