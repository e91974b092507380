"""The `file` sink: start-up repair of a torn last line, a full disk retried without
torn lines, and a clear error for a file that cannot be opened."""

from __future__ import annotations

import asyncio
import errno
import json
import os
from pathlib import Path

import pytest

from kubelogs.codecs.document import encode_documents
from kubelogs.config.base import BuildContext
from kubelogs.pipeline.acks import AckToken
from kubelogs.pipeline.channels import Channel
from kubelogs.sinks import file as file_module
from kubelogs.sinks import ndjson_writer
from kubelogs.sinks.file import FileSinkConfig, FileSinkOpenError, _cut_torn_tail
from kubelogs.telemetry.metrics import Metrics
from support.store_docs import make_batches
from support.waiting import until


def test_torn_last_line_is_cut_at_the_last_newline(tmp_path: Path) -> None:
    """A document cut by a crash mid-write is removed; complete lines stay."""
    out = tmp_path / "out.ndjson"
    out.write_bytes(b'{"a":1}\n{"b":2}\n{"c":')
    _cut_torn_tail(out)

    assert b'{"a":1}\n{"b":2}\n' == out.read_bytes()


def test_complete_file_and_single_torn_line(tmp_path: Path) -> None:
    """A file ending in a newline is untouched; a file holding only a torn line is emptied."""
    ok = tmp_path / "ok.ndjson"
    ok.write_bytes(b'{"a":1}\n')
    torn = tmp_path / "torn.ndjson"
    torn.write_bytes(b'{"a":' + b"x" * 200_000)
    _cut_torn_tail(ok)
    _cut_torn_tail(torn)
    _cut_torn_tail(tmp_path / "missing.ndjson")

    assert b'{"a":1}\n' == ok.read_bytes()
    assert b"" == torn.read_bytes()


class DiskFullWrites:
    """Behind the sink's write call: while `full`, each attempt writes part of what it
    is given (a short write) and then fails with ENOSPC, as a filling disk does. Before
    every attempt it checks that the file holds only whole lines: the sink must have cut
    the torn part of the previous attempt."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.full = False
        self.failures = 0
        self.torn_before_attempt = 0
        self._mid_attempt = False

    def __call__(self, fd: int, data: memoryview) -> int:
        if not self._mid_attempt:
            content = self.path.read_bytes()
            if content and not content.endswith(b"\n"):
                self.torn_before_attempt += 1
        if not self.full:
            self._mid_attempt = False
            return os.write(fd, data)
        if not self._mid_attempt and len(data) > 1:
            self._mid_attempt = True
            return os.write(fd, data[: len(data) // 2])
        self._mid_attempt = False
        self.failures += 1
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_is_retried_without_torn_lines_and_every_document_arrives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ndjson_writer, "FIRST_BACKOFF", 0.01)
    monkeypatch.setattr(ndjson_writer, "MAX_BACKOFF", 0.05)
    out = tmp_path / "out" / "docs.ndjson"
    disk = DiskFullWrites(out)
    monkeypatch.setattr(file_module, "_os_write", disk)
    asyncio.run(_full_disk_is_retried(out, disk))


async def _full_disk_is_retried(out: Path, disk: DiskFullWrites) -> None:
    batches = make_batches(seed=2, containers=2, lines=200, per_batch=25)
    before, during = batches[:4], batches[4:]
    metrics = Metrics()
    cfg = FileSinkConfig.model_validate({"type": "file", "inputs": ["x"], "path": str(out)})
    sink = cfg.build(
        BuildContext(component_id="f", data_dir=out.parent, node_name="n", metrics=metrics)
    )
    acked: list[int] = []
    channel = Channel("f", capacity=1000)
    channel.add_producer()
    task = asyncio.create_task(sink.run(channel))
    errors = {"component_id": "f", "component_kind": "sink", "component_type": "file"}

    def failed() -> float:
        value = metrics.registry.get_sample_value(
            "kubelogs_component_errors_total",
            {**errors, "error_type": "ENOSPC", "stage": "sending"},
        )
        return value or 0.0

    for i, b in enumerate(before):
        await channel.put(b.derive(ack=AckToken(lambda i=i: acked.append(i))))
    await until(lambda: len(acked) == len(before), "the first documents written")
    disk.full = True
    for i, b in enumerate(during, len(before)):
        await channel.put(b.derive(ack=AckToken(lambda i=i: acked.append(i))))
    await until(lambda: failed() >= 3, "retried writes on the full disk")
    acked_while_full = len(acked)
    disk.full = False
    await until(lambda: len(acked) == len(batches), "every document once space returned")
    channel.close_producer()
    await asyncio.wait_for(task, timeout=30)
    await sink.close()

    lines = out.read_bytes().splitlines(keepends=True)
    assert len(before) == acked_while_full
    assert disk.failures >= 3
    assert 0 == disk.torn_before_attempt
    assert all(line.endswith(b"\n") for line in lines)
    assert [json.loads(d) for b in batches for d in encode_documents(b)] == [
        json.loads(line) for line in lines
    ]


def test_a_file_that_cannot_be_opened_is_one_sentence_naming_sink_and_path(
    tmp_path: Path,
) -> None:
    (tmp_path / "plain").write_text("a file, not a directory")
    cfg = FileSinkConfig.model_validate(
        {"type": "file", "inputs": ["x"], "path": str(tmp_path / "plain" / "out.ndjson")}
    )

    with pytest.raises(FileSinkOpenError) as caught:
        cfg.build(
            BuildContext(
                component_id="archive", data_dir=tmp_path, node_name="n", metrics=Metrics()
            )
        )

    message = str(caught.value)
    assert isinstance(caught.value, OSError)
    assert "\n" not in message
    assert message.startswith(f"sinks.archive: cannot open {tmp_path / 'plain' / 'out.ndjson'}")
    assert caught.value.errno in (errno.ENOTDIR, errno.EEXIST)  # the CLI names it
