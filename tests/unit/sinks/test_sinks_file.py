"""The `file` sink's start-up repair of a torn last line."""

from __future__ import annotations

from pathlib import Path

from kubelogs.sinks.file import _cut_torn_tail


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
