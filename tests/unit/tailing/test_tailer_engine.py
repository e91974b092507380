"""The tailing engine driven directly (no subprocess): fairness and file identity."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from kubelogs.pipeline.event import Batch, FileContext
from kubelogs.tailing.checkpoints import Checkpoint, CheckpointStore
from kubelogs.tailing.fingerprint import fingerprint
from kubelogs.tailing.tailer import Tailer, TailSettings
from kubelogs.telemetry.metrics import Metrics


def _ctx(link: str, real: str, key: str, prefix: str) -> FileContext:
    return FileContext(source_id="t", path=real, file_key=key, id_prefix=prefix)


def _settings(pattern: str, **kw: object) -> TailSettings:
    base: dict[str, object] = dict(
        source_id="t",
        source_type="file",
        include=[pattern],
        exclude=[],
        read_from="beginning",
        max_line_size=1 << 20,
        format="plain",
        node_name="n",
        context_factory=_ctx,
        read_chunk=4096,
        poll_interval=0.01,
    )
    base.update(kw)
    return TailSettings(**base)  # type: ignore[arg-type]


class _Collect:
    def __init__(self, stop_after: int, stopping: asyncio.Event) -> None:
        self.batches: list[Batch] = []
        self.stop_after = stop_after
        self.stopping = stopping

    async def send(self, batch: Batch) -> None:
        self.batches.append(batch)
        if batch.ack is not None:
            batch.ack.resolve()
        if len(self.batches) >= self.stop_after:
            self.stopping.set()


def _run(tailer: Tailer, stop_after: int) -> list[Batch]:
    async def go() -> list[Batch]:
        stopping = asyncio.Event()
        out = _Collect(stop_after, stopping)
        await asyncio.wait_for(tailer.run(out, stopping), 60)
        return out.batches

    return asyncio.run(go())


def test_one_noisy_file_does_not_starve_a_thousand_quiet_ones(tmp_path: Path) -> None:
    """Round-robin reads: every quiet file gets its batch within the first round even
    though one file holds 4 MiB."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "noisy.log").write_bytes(b"n" * 99 + b"\n" * 1 + (b"x" * 99 + b"\n") * 40000)
    for i in range(1000):
        (logs / f"quiet-{i:04d}.log").write_bytes(f"quiet {i}\n".encode())
    store = CheckpointStore(tmp_path / "ck.db")
    tailer = Tailer(_settings(str(logs / "*.log")), store, Metrics())
    batches = _run(tailer, stop_after=1001)
    tailer.close()

    first_round = {Path(b.ctx.path).name for b in batches[:1001]}
    assert 1001 == len(first_round)
    assert 1 == sum(1 for b in batches if b.ctx.path.endswith("noisy.log"))


def test_reused_inode_with_other_content_is_read_from_the_start(tmp_path: Path) -> None:
    """A checkpoint of an earlier file that had this inode is not applied to a new file."""
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "app.log"
    path.write_bytes(b"new file first line\nsecond\n")
    st = os.stat(path)
    store = CheckpointStore(tmp_path / "ck.db")
    # The old file had the same device and inode but other content, read up to 20 bytes.
    store.save(
        "t",
        [Checkpoint(f"{st.st_dev}:{st.st_ino}:0123456789abcdef", str(path), 20, 40, False, 0.0)],
        [],
    )
    tailer = Tailer(_settings(str(logs / "*.log")), store, Metrics())
    batches = _run(tailer, stop_after=1)
    tailer.close()

    assert ["new file first line", "second"] == batches[0].messages
    assert [0, 20] == batches[0].offsets


def test_same_file_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """The same device, inode and first line resume exactly at the stored offset."""
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "app.log"
    path.write_bytes(b"first line\nsecond\nthird\n")
    st = os.stat(path)
    fd = os.open(path, os.O_RDONLY)
    fp = fingerprint(fd)
    os.close(fd)
    assert fp is not None
    store = CheckpointStore(tmp_path / "ck.db")
    store.save(
        "t", [Checkpoint(f"{st.st_dev}:{st.st_ino}:{fp}", str(path), 11, 24, False, 0.0)], []
    )
    tailer = Tailer(_settings(str(logs / "*.log")), store, Metrics())
    batches = _run(tailer, stop_after=1)
    tailer.close()

    assert ["second", "third"] == batches[0].messages
    assert 24 == store.load("t")[f"{st.st_dev}:{st.st_ino}:{fp}"].offset


def test_file_without_a_complete_first_line_waits_for_one(tmp_path: Path) -> None:
    """No fingerprint yet (short, no newline): not opened; read once the line completes."""
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "app.log"
    path.write_bytes(b"partial")
    fd = os.open(path, os.O_RDONLY)

    assert fingerprint(fd) is None
    with open(path, "ab") as f:
        f.write(b" line\n")
    assert fingerprint(fd) is not None
    os.close(fd)


def test_unfinished_file_gone_while_down_is_counted_as_lost(tmp_path: Path) -> None:
    """A checkpoint behind its file's last known size, for a file that no longer exists:
    the difference is reported in kubelogs_lost_bytes_total and the row is removed."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "live.log").write_bytes(b"live\n")
    store = CheckpointStore(tmp_path / "ck.db")
    gone = str(logs / "gone.log.1")
    store.save("t", [Checkpoint("1:2:abc", gone, 10, 110, False, 0.0)], [])
    metrics = Metrics()
    tailer = Tailer(_settings(str(logs / "*.log")), store, metrics)
    _run(tailer, stop_after=1)
    tailer.close()
    text = metrics.render().decode()

    assert f'kubelogs_lost_bytes_total{{component_id="t",file="{gone}"}} 100.0' in text
    assert "1:2:abc" not in store.load("t")


def test_a_file_read_to_its_end_and_gone_while_down_is_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Read to its last known size, then removed (or copytruncated with the copy rotated
    away) while kubelogs was down: what was appended meanwhile cannot be counted, but
    the start says that the file went, instead of nothing at all."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "live.log").write_bytes(b"live\n")
    store = CheckpointStore(tmp_path / "ck.db")
    gone = str(logs / "gone.log")
    done = str(logs / "done.log.1")
    store.save(
        "t",
        [
            Checkpoint("1:2:abc", gone, 110, 110, False, 0.0),
            Checkpoint("1:3:def", done, 50, 50, True, 0.0),
        ],
        [],
    )
    metrics = Metrics()
    tailer = Tailer(_settings(str(logs / "*.log")), store, metrics)
    with caplog.at_level(logging.WARNING, logger="kubelogs.tail"):
        _run(tailer, stop_after=1)
    tailer.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    assert warnings == [
        f"{gone} was removed or truncated while kubelogs was down (read to byte 110); "
        "lines written to it after kubelogs stopped, if any, were not read"
    ]
    assert f'file="{gone}"' not in metrics.render().decode()
    assert "1:2:abc" not in store.load("t")
