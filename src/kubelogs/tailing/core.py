"""The tailing engine's state and the primitives every concern uses: opening a file,
following it from an offset, emitting a batch with its ack token, a checkpoint row.

The concerns are layered on top, each in its own module: `identity` (which checkpoint a
file is), `truncation` (copytruncate and its copies), `startup` (the first scan), and
`tailer` (the run loop: discovery, rotation, reading, release, checkpoints). The design
and its reasoning are in `tailer`'s docstring.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kubelogs.codecs.columns import Columns
from kubelogs.pipeline.event import Batch, make_id_prefix
from kubelogs.tailing.checkpoints import Checkpoint, CheckpointStore
from kubelogs.tailing.discovery import ContextFactory, Match, find_matches
from kubelogs.tailing.files import TAIL_BYTES, TailedFile, make_parser
from kubelogs.tailing.fingerprint import ANCHOR_BYTES, anchor_hash, file_key, head_fingerprint
from kubelogs.tailing.stages import (
    NO_STAGES,
    FileStages,
    ParseGuard,
    StageResolver,
    wrap_parser,
)
from kubelogs.telemetry.metrics import ComponentMetrics, Metrics

log = logging.getLogger("kubelogs.tail")


@dataclass
class TailSettings:
    source_id: str
    source_type: str
    """The component type, for metric labels."""
    include: list[str]
    exclude: list[str]
    read_from: str
    max_line_size: int
    format: str
    """``auto`` (CRI or Docker json-file, detected per file) or ``plain``."""
    node_name: str
    context_factory: ContextFactory
    accept: Callable[[str], bool] = lambda _path: True
    """Extra filter on matched paths (e.g. excluded namespaces)."""
    read_chunk: int = 256 * 1024
    glob_interval: float = 1.0
    poll_interval: float = 0.05
    rotate_wait: float = 5.0
    checkpoint_interval: float = 1.0
    extra_paths: Callable[[], Iterable[Match]] = lambda: ()
    """Additional files found by other means (pod annotations), with their format."""
    stages: StageResolver | None = None
    """Per-file multiline rule and parser (tailing/stages.py); None: neither."""


class TailerCore:
    def __init__(
        self, settings: TailSettings, checkpoints: CheckpointStore, metrics: Metrics
    ) -> None:
        self.s = settings
        self.checkpoints = checkpoints
        self.metrics = metrics
        self.cm = ComponentMetrics(metrics, settings.source_id, "source", settings.source_type)
        self.files: list[TailedFile] = []
        self.by_link: dict[str, TailedFile] = {}
        self.by_inode: dict[tuple[int, int], TailedFile] = {}
        self.rows: dict[str, Checkpoint] = {}
        self.finished: dict[str, Checkpoint] = {}
        self._deleted_keys: list[str] = []
        self._pending_finished: list[Checkpoint] = []
        self._outbox: list[Batch] = []
        self._predecessor: dict[str, TailedFile] = {}
        """Per name, the rotated file that the next file under that name waits for."""
        self._scan_now = False
        self._moved = False
        """An identity moved to a copytruncate copy since the last checkpoint write."""
        self._line_cap = settings.max_line_size + 1024
        self._started = False
        self._last_gc = 0.0
        self._stages_version = -1
        self._parse_guard = ParseGuard()
        self._stages_changed = False
        """A file's settings changed: checkpoints are written before its next read."""
        self._closing = False
        """The final checkpoints of a clean stop are being written."""
        metrics.add_collector(self._gauges)

    def _matches(self) -> list[Match]:
        s = self.s
        return find_matches(
            s.include, s.exclude, s.accept, s.context_factory, s.format, s.extra_paths()
        )

    def _new_key(self, f: TailedFile) -> str:
        """A key no row and no followed file has: ``dev:ino:fp``, else ``…:g<N>`` (the
        same inode holding new content with the same first line)."""
        base = file_key(f.dev, f.ino, f.fp)
        used = {g.key for g in self.files} | set(self.rows)
        if base not in used:
            return base
        n = 2
        while f"{base}:g{n}" in used:
            n += 1
        return f"{base}:g{n}"

    @staticmethod
    def _where(f: TailedFile) -> str | None:
        d = os.path.dirname(f.disk_path)
        try:
            st = os.stat(f.disk_path)
            if (st.st_dev, st.st_ino) == f.inode:
                return f.disk_path
        except OSError:
            pass
        try:
            with os.scandir(d) as entries:
                for e in entries:
                    if e.inode() == f.ino and e.is_file(follow_symlinks=False):
                        return e.path
        except OSError:
            pass
        return None

    def _open(
        self, link: str, real: str, factory: ContextFactory, fmt: str, *, rotated: bool
    ) -> TailedFile | None:
        try:
            fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            log.warning("cannot open %s: %s", real, exc.strerror)
            self.cm.error("open_failed", "receiving")
            return None
        try:
            st = os.fstat(fd)
            found = head_fingerprint(fd) if stat.S_ISREG(st.st_mode) else None
        except OSError:
            found = None
        if found is None:
            os.close(fd)
            return None
        f = TailedFile(link, real, fd, st, found[0], found[1], factory, fmt)
        f.rotated = rotated
        return f

    def _activate(self, f: TailedFile, start: int, row: Checkpoint | None = None) -> None:
        assert f.key
        f.pos = start
        f.ledger.reset(start)
        if start > 0:
            before = os.pread(f.fd, min(ANCHOR_BYTES, start), start - min(ANCHOR_BYTES, start))
            f.ledger.committed_mark = before
            f.tail = before[-TAIL_BYTES:]
        f.saved = start if row is not None and row.offset == start else -1
        head = os.pread(f.fd, 1, 0)
        f.parser = make_parser(f.fmt, head, self.s.max_line_size)
        f.ctx = f.factory(f.link, f.path, f.key, make_id_prefix(self.s.node_name, f.key))
        if row is None or not self._restore_stages(f, start, row):
            self._choose_stages(f)
            f.stages_from = [(start, f.stages_key)]
        self.files.append(f)
        log.debug("following %s from %d%s", f.path, start, " (rotated)" if f.rotated else "")
        self.by_inode[f.inode] = f
        if not f.rotated:
            self.by_link[f.link] = f
        self.finished.pop(f.key, None)

    def _last_line_start(self, f: TailedFile) -> int:
        """`read_from: end`: start after the last complete line."""
        size = f.size
        pos = max(0, size - 65536)
        tail = os.pread(f.fd, size - pos, pos)
        nl = tail.rfind(b"\n")
        return pos + nl + 1 if nl >= 0 else 0

    def _lost(self, path: str, nbytes: int, why: str) -> None:
        log.warning("%d bytes of %s %s; they are lost", nbytes, path, why)
        self.metrics.lost_bytes.labels(self.s.source_id, path).inc(nbytes)

    def _end_offset(self, f: TailedFile) -> int:
        end = f.head_off if f.discarding else f.pos - len(f.carry)
        pending = f.parser.pending_offset
        if pending is not None and pending < end:
            end = pending
        return end

    def _mark(self, f: TailedFile, end: int, data: bytes, data_end: int) -> bytes:
        """The bytes before `end` (for the checkpoint's anchor): from the data just read
        when it holds them, else read again."""
        want = min(ANCHOR_BYTES, end)
        start = data_end - len(data)
        if end <= data_end and end - want >= start:
            return data[end - want - start : end - start]
        if f.fd < 0 or want == 0:
            return f.ledger.committed_mark if end == f.ledger.committed else b""
        return os.pread(f.fd, want, end - want)

    def _emit(
        self, f: TailedFile, cols: Columns, data: bytes = b"", data_end: int = 0
    ) -> Batch | None:
        end = self._end_offset(f)
        if not cols.messages:
            if end > f.ledger.committed:
                f.ledger.advance_idle(end, self._mark(f, end, data, data_end))
            return None
        assert f.ctx is not None
        self.cm.received_events.inc(len(cols.messages))
        batch = Batch(
            ctx=f.ctx,
            times=cols.times,
            messages=cols.messages,
            streams=cols.streams,
            offsets=cols.offsets,
            flags=cols.flags or None,
            fields=None,
            ack=f.ledger.track(end, self._mark(f, end, data, data_end)),
            end_offset=end,
            tstrs=cols.tstrs,
        )
        if f.parse is not None:
            errors = self._parse_guard.errors
            batch = self._parse_guard(f.parse, batch)
            if self._parse_guard.errors != errors:
                self.cm.error("parse_failed", "processing")
        return batch

    def _choose_stages(self, f: TailedFile) -> Batch | None:
        """Resolve the file's multiline rule and parser; when they change on an open
        file, what its old rule held is emitted first (the batch returned).

        While the file replays the switches an earlier run recorded (`f.replay`), the
        recorded settings apply: the resolver is asked again once the read has passed
        the last of them (`_replay_due`)."""
        resolver = self.s.stages
        if resolver is None or f.ctx is None or f.replay:
            return None
        try:
            stages = resolver.resolve(f.ctx)
        except Exception as exc:  # a resolver bug must not stop the file
            log.warning("cannot choose the parser of %s: %s", f.path, exc)
            stages = NO_STAGES
        return self._switch_stages(f, stages)

    def _switch_stages(
        self, f: TailedFile, stages: FileStages, *, record: bool = True
    ) -> Batch | None:
        """Apply `stages` to `f` from the first byte not yet fed to its parser on: the
        open groups of the old rule are emitted as they are (the batch returned), and,
        with `record`, the switch is remembered with its offset (`f.stages_from`) and
        made durable before any line read with the new settings leaves (`poll`), so a
        restart re-reads the bytes in between with the settings they were read with.
        """
        if stages.key == f.stages_key and f.stages_from:
            return None
        batch = None
        held = getattr(f.parser, "close_groups", None)
        if held is not None:
            cols = Columns()
            held(cols)
            batch = self._emit(f, cols)
        f.parser = wrap_parser(f.parser, stages.multiline)
        f.parse = stages.parse
        f.stages_key = stages.key
        if record:
            at = f.head_off if f.discarding else f.pos - len(f.carry)
            history = f.stages_from
            if history:
                if history[-1][0] >= at:
                    history.pop()  # the settings it replaces covered no byte
                if not history or history[-1][1] != stages.key:
                    history.append((at, stages.key))
                f.saved = -1  # the row records the change (`save_checkpoints`)
                self._stages_changed = True
            else:
                history.append((at, stages.key))  # the file's first settings
        return batch

    def _replay_due(self, f: TailedFile) -> None:
        """Apply the recorded switches the read has reached (their batches go to the
        outbox, after the batch of the read); after the last one, the resolver's
        current answer."""
        if not f.replay:
            return
        while f.replay and f.replay[0][0] <= f.pos:
            _, stages = f.replay.pop(0)
            if stages is None:
                continue  # the end of what the run before may have read
            batch = self._switch_stages(f, stages, record=False)
            if batch is not None:
                self._outbox.append(batch)
        if not f.replay:
            batch = self._choose_stages(f)
            if batch is not None:
                self._outbox.append(batch)

    def _restore_stages(self, f: TailedFile, start: int, row: Checkpoint) -> bool:
        """Resume `f` with the settings `row` recorded (see tailing/checkpoints.py): the
        one in force at `start` now, the later switches queued for `_replay_due`, and
        the resolver asked again only once the read has passed the file's present size
        (the run before, if it was killed, may have read and sent any line before it,
        grouped by the recorded settings). False (nothing done) when the row records
        nothing (a clean stop) or the settings cannot be rebuilt: then the resolver's
        answer applies from `start`."""
        resolver = self.s.stages
        rebuild = getattr(resolver, "stages_for", None)
        if not row.stages or rebuild is None:
            return False
        try:
            recorded = [(int(off), _hashable(key)) for off, key in json.loads(row.stages)]
            found = [(off, rebuild(key)) for off, key in recorded]
        except Exception as exc:  # an unreadable record must not stop the file
            log.warning("cannot read the recorded settings of %s: %s", f.path, exc)
            return False
        steps: list[tuple[int, FileStages]] = [(off, st) for off, st in found if st is not None]
        if not steps or len(steps) < len(found):
            log.warning(
                "%s: the settings recorded by the previous run are no longer known; "
                "reading with the current ones",
                f.path,
            )
            return False
        k = max(1, sum(1 for off, _ in steps if off <= start))
        current = steps[k - 1][1]
        f.parser = wrap_parser(f.parser, current.multiline)
        f.parse = current.parse
        f.stages_key = current.key
        f.stages_from = [(start, current.key), *((off, st.key) for off, st in steps[k:])]
        f.replay = [*steps[k:]]
        if f.size > max(start, steps[-1][0]):
            f.replay.append((f.size, None))
        return True

    def _refresh_stages(self) -> None:
        """Re-resolve every open file's stages when the resolver's answers may have
        changed (the pod cache learned a pod or an annotation)."""
        resolver = self.s.stages
        if resolver is None:
            return
        version = resolver.version()
        if version == self._stages_version:
            return
        self._stages_version = version
        for f in self.files:
            if f.fd >= 0:
                batch = self._choose_stages(f)
                if batch is not None:
                    self._outbox.append(batch)

    def _expire_groups(self, f: TailedFile) -> Batch | None:
        """At the end of a file: multiline groups that stopped growing are emitted."""
        expire = getattr(f.parser, "expire", None)
        if expire is None:
            return None
        cols = Columns()
        if not expire(cols):
            return None
        return self._emit(f, cols)

    def _finish_parser(self, f: TailedFile, cols: Columns) -> None:
        """The file ended for good: what is left is emitted as it is."""
        if f.discarding:
            f.parser.feed([f.head], f.head_off, cols, truncated=True)
            f.discarding = False
        if f.carry:
            # The file ended without a final newline: emit what is there.
            f.parser.feed([f.carry], f.pos - len(f.carry), cols)
            f.carry = b""
        f.ended_open = f.parser.open_streams
        f.parser.flush(cols)
        f.replay = []  # switches recorded past the end of what this file held

    def _retire(self, f: TailedFile) -> None:
        """End `f` for good: what its parser holds is emitted as it is, and its row goes
        once its batches are acknowledged."""
        cols = Columns()
        self._finish_parser(f, cols)
        batch = self._emit(f, cols)
        if batch is not None:
            self._outbox.append(batch)
        f.close()
        f.deleted = True

    def _row_of(self, f: TailedFile, *, finished: bool = False) -> Checkpoint:
        committed = f.ledger.committed
        return Checkpoint(
            f.key,
            f.disk_path,
            committed,
            max(f.size, f.pos),
            finished,
            time.time(),
            f.dev,
            f.ino,
            f.fp,
            anchor_hash(f.ledger.committed_mark) if committed else "",
            self._stages_record(f, committed, finished),
        )

    def _stages_record(self, f: TailedFile, committed: int, finished: bool) -> str:
        """What the row records of `f`'s settings: nothing for a finished file, a source
        without per-file settings, or a clean stop with nothing in flight (then nothing
        after the checkpoint was sent, and a restart may read it with any settings) -
        unless the file still replays what a killed run before recorded (that run may
        have sent lines after the checkpoint)."""
        if finished or self.s.stages is None:
            return ""
        if self._closing and f.ledger.in_flight == 0 and not f.replay:
            return ""
        return _recorded_stages(f, committed)

    def _gauges(self) -> list[Any]:
        from prometheus_client.core import GaugeMetricFamily

        sid = self.s.source_id
        lag = GaugeMetricFamily(
            "kubelogs_file_lag_bytes",
            "File size minus the acknowledged checkpoint.",
            labels=["component_id", "file"],
        )
        age = GaugeMetricFamily(
            "kubelogs_checkpoint_age_seconds",
            "Seconds since the oldest file's checkpoint last moved, among files with lag.",
            labels=["component_id"],
        )
        open_files = GaugeMetricFamily(
            "kubelogs_files_open", "Files being followed.", labels=["component_id"]
        )
        oldest = 0.0
        now = time.time()
        n_open = 0
        for f in list(self.files):
            if f.fd >= 0:
                n_open += 1
            behind = max(f.size, f.pos) - f.ledger.committed
            lag.add_metric([sid, f.path], float(max(0, behind)))
            row = self.rows.get(f.key)
            if behind > 0 and row is not None:
                oldest = max(oldest, now - row.updated)
        age.add_metric([sid], oldest)
        open_files.add_metric([sid], float(n_open))
        return [lag, age, open_files]


def _recorded_stages(f: TailedFile, committed: int) -> str:
    """`Checkpoint.stages` for `f` at `committed`: the settings in force at it and the
    switches after it. Entries the checkpoint has passed are dropped from
    `f.stages_from` here."""
    history = f.stages_from
    k = sum(1 for off, _ in history if off <= committed)
    if k > 1:
        del history[: k - 1]
    if not history:
        return ""
    try:
        return json.dumps([[off, key] for off, key in history], separators=(",", ":"))
    except (TypeError, ValueError):
        return ""  # a resolver whose keys are not JSON: nothing to record


def _hashable(value: Any) -> Any:
    """A key read back from JSON: lists are tuples again (keys are compared, hashed)."""
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


def _holds_at(fd: int, end: int, tail: bytes) -> bool:
    """Whether the file has `tail` just before `end`."""
    return not tail or os.pread(fd, len(tail), end - len(tail)) == tail
