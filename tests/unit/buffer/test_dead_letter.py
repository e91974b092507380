"""The dead-letter queue's files: complete or absent, documents kept byte for byte, and a
replay that replaces a file by what is left without touching newer files."""

from __future__ import annotations

from pathlib import Path

import msgspec

from kubelogs.buffer import dead_letter


def _entry(i: int, doc: bytes = b'{"message":"caf\xc3\xa9","n":1}') -> dead_letter.Entry:
    return dead_letter.Entry(
        time="2026-11-30T00:00:00.000000000Z",
        sink="es",
        id=f"id-{i}",
        target="logstash-2026.11.30",
        status=400,
        error_type="mapper_parsing_exception",
        reason="failed to parse field [n]",
        document=msgspec.Raw(doc),
    )


def test_entries_round_trip_with_the_document_byte_for_byte(tmp_path: Path) -> None:
    path = dead_letter.write_entries(tmp_path, [_entry(1), _entry(2)])
    got = dead_letter.read_file(path)

    assert [] == list(tmp_path.glob("*.tmp"))
    assert ["id-1", "id-2"] == [e.id for e in got]
    assert b'{"message":"caf\xc3\xa9","n":1}' == bytes(got[0].document)
    assert {"message": "café", "n": 1} == dead_letter.entry_as_dict(got[0])["document"]


def test_replace_keeps_only_what_is_left_and_newer_files_stay(tmp_path: Path) -> None:
    old = dead_letter.write_entries(tmp_path, [_entry(1), _entry(2)])
    newer = dead_letter.write_entries(tmp_path, [_entry(3)])
    dead_letter.replace_file(old, [_entry(2)])
    emptied = dead_letter.write_entries(tmp_path, [_entry(4)])
    dead_letter.replace_file(emptied, [])

    ids = sorted(e.id for _, e in dead_letter.iter_entries(tmp_path))
    assert ["id-2", "id-3"] == ids
    assert not old.exists()
    assert newer.exists()
    assert not emptied.exists()


def test_a_damaged_line_is_skipped_not_fatal(tmp_path: Path) -> None:
    path = dead_letter.write_entries(tmp_path, [_entry(1)])
    path.write_bytes(path.read_bytes() + b"{not json\n")

    assert ["id-1"] == [e.id for e in dead_letter.read_file(path)]
