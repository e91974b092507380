"""copytruncate, file identity and first start: the cases that lost or duplicated lines.

Each test drives the engine in-process (support/tailsim.py) with a store that drops
resent events by high-water mark, as the local store does, so a duplicate or a lost
line shows up as a wrong count.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kubelogs.tailing.checkpoints import Checkpoint, CheckpointStore
from support.tailsim import Node


def write(path: Path, *lines: str) -> None:
    with open(path, "ab") as f:
        f.write(b"".join(f"{ln}\n".encode() for ln in lines))


def copytruncate(path: Path, copy: Path) -> None:
    shutil.copyfile(path, copy)
    os.truncate(path, 0)


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    return d


def node(tmp_path: Path, logs: Path, **kw: object) -> Node:
    return Node(tmp_path, [str(logs / "*.log")], **kw)  # type: ignore[arg-type]


def test_copytruncate_with_batches_in_flight_then_kill_loses_nothing(
    tmp_path: Path, logs: Path
) -> None:
    """Batches read but not acknowledged when the file is copytruncated, then kill -9:
    the restart resends them from the copy under the same identity - once in the store."""
    app = logs / "app.log"
    write(app, *[f"a{i}" for i in range(50)])
    n = node(tmp_path, logs)
    n.start()
    n.pump()
    n.ack = False
    write(app, *[f"b{i}" for i in range(50)])
    n.pump()  # b* read, in flight
    copytruncate(app, logs / "app.log.1")
    write(app, "c0")
    n.pump()
    n.kill()
    n.ack = True
    n.start()
    n.pump()
    n.stop()

    want = [f"a{i}" for i in range(50)] + [f"b{i}" for i in range(50)] + ["c0"]
    assert sorted(want) == sorted(n.messages())
    assert 0 == n.lost


def test_partial_line_at_copytruncate_is_completed_from_the_copy(
    tmp_path: Path, logs: Path
) -> None:
    """A line whose end had not been read when the file was truncated is read whole from
    the copy (the parser's state moves with the file's identity)."""
    app = logs / "app.log"
    write(app, "one")
    with open(app, "ab") as f:
        f.write(b"tw")
    n = node(tmp_path, logs)
    n.start()
    n.pump()
    with open(app, "ab") as f:
        f.write(b"o\nthree\n")
    copytruncate(app, logs / "app.log.1")
    write(app, "four")
    n.pump()
    n.stop()

    assert ["one", "two", "three", "four"] == n.messages()


def test_copytruncate_while_down_resumes_in_the_copy_without_duplicates(
    tmp_path: Path, logs: Path
) -> None:
    """kill -9 (acks in the store, checkpoint behind), copytruncate while down: the copy
    continues under the old identity, so the store drops the resent lines."""
    app = logs / "app.log"
    write(app, *[f"a{i}" for i in range(50)])
    n = node(tmp_path, logs)
    n.start()
    n.pump()
    t = n.tailer
    assert t is not None
    write(app, *[f"b{i}" for i in range(50)])
    list(map(n.deliver, t.poll(scan=False)))  # stored, checkpoint not saved
    n.kill()
    copytruncate(app, logs / "app.log.1")
    write(app, "c0", "c1")
    n.start()
    n.pump()
    n.stop()

    counts = n.counts()
    assert [] == [m for m, c in counts.items() if c > 1]
    assert 102 == len(counts)


@pytest.mark.parametrize("rotated_name", ["app.log.1", "app.log-20250115", "app-20250115.log"])
def test_copytruncate_with_the_same_first_line_keeps_new_content(
    tmp_path: Path, logs: Path, rotated_name: str
) -> None:
    """A header line survives the truncation: the new content is a new identity
    (``…:g2``), not dropped by the store as a resend; logrotate's names all work."""
    app = logs / "app.log"
    write(app, "# header", *[f"a{i}" for i in range(30)])
    n = node(tmp_path, logs)
    n.start()
    n.pump()
    copytruncate(app, logs / rotated_name)
    write(app, "# header", *[f"b{i}" for i in range(30)])
    n.pump()
    n.stop()

    counts = n.counts()
    assert 2 == counts["# header"]
    assert all(counts[f"b{i}"] == 1 for i in range(30))
    assert 62 == sum(counts.values())
    assert any(k.endswith(":g2") for k in n.marks)


def test_truncated_and_regrown_between_reads_is_read_from_the_start(
    tmp_path: Path, logs: Path
) -> None:
    """Truncated and written past the old position before the engine looked again: the
    bytes before the read position changed, so the new content is read from 0."""
    app = logs / "app.log"
    write(app, *[f"old-{i:03d}" for i in range(20)])
    n = node(tmp_path, logs)
    n.start()
    n.pump()
    os.truncate(app, 0)
    write(app, *[f"new-{i:03d}" for i in range(40)])
    n.pump()
    n.stop()

    assert [f"new-{i:03d}" for i in range(40)] == n.messages()[20:]


def test_truncated_while_down_without_a_copy_counts_the_lost_bytes(
    tmp_path: Path, logs: Path
) -> None:
    app = logs / "app.log"
    write(app, *[f"a{i}" for i in range(10)])
    n = node(tmp_path, logs)
    n.start()
    n.pump()
    n.ack = False
    write(app, "unread")  # 7 bytes seen, never acknowledged, then truncated while down
    n.pump()
    n.stop()
    n.ack = True
    os.truncate(app, 0)
    write(app, "fresh")
    n.start()
    n.pump()
    n.stop()

    assert n.messages()[-1] == "fresh"
    assert 7 == n.lost


def test_docker_file_with_reused_inode_and_same_long_first_message_is_new(
    tmp_path: Path, logs: Path
) -> None:
    """Docker json-file puts the time after the message: a first message longer than a
    few hundred bytes used to give two containers the same fingerprint."""
    banner = "x" * 600

    def line(msg: str, t: str) -> str:
        return f'{{"log":"{msg}\\n","stream":"stdout","time":"{t}"}}'

    app = logs / "app.log"
    write(app, line(banner, "2025-01-15T10:00:00.000000001Z"), line("old", "2025-01-15T10:00:01Z"))
    n = node(tmp_path, logs, fmt="auto")
    n.start()
    n.pump()
    n.stop()
    ino = os.stat(app).st_ino
    os.unlink(app)
    tmp = logs / "app.tmp"
    write(tmp, line(banner, "2025-01-15T11:00:00.000000001Z"))
    write(tmp, *[line(f"new{i}", "2025-01-15T11:00:01Z") for i in range(3)])
    os.rename(tmp, app)
    if os.stat(app).st_ino != ino:
        # The filesystem did not reuse the inode: make the old checkpoint point at it.
        store = CheckpointStore(tmp_path / "checkpoints.db")
        (row,) = store.load("t").values()
        st = os.stat(app)
        row.dev, row.ino = st.st_dev, st.st_ino
        store.save("t", [row], [])
        store.close()
    n.start()
    n.pump()
    n.stop()

    assert [banner, "old", banner, "new0", "new1", "new2"] == n.messages()


def test_copy_is_matched_only_to_its_own_file(tmp_path: Path, logs: Path) -> None:
    """Two services whose files share a header line: a copy of one never resumes at the
    other's offset."""
    a, b = logs / "a.log", logs / "b.log"
    write(a, "# header", *[f"a{i}" for i in range(30)])
    write(b, "# header", "b0")
    n = node(tmp_path, logs)
    n.start()
    n.pump()
    n.kill()
    write(b, *[f"b{i}" for i in range(1, 40)])
    copytruncate(b, logs / "b.log.1")
    n.start()
    n.pump()
    n.stop()

    counts = n.counts()
    assert all(counts[f"b{i}"] == 1 for i in range(40))


def test_rotated_file_deleted_while_down_whose_inode_the_new_file_takes(
    tmp_path: Path, logs: Path
) -> None:
    """The stale checkpoint is not "found" by inode: the new file is read from 0 and the
    old file's unread bytes are counted as lost."""
    app = logs / "app.log"
    write(app, *[f"a{i}" for i in range(10)])
    n = node(tmp_path, logs)
    n.start()
    n.pump()
    n.kill()
    store = CheckpointStore(tmp_path / "checkpoints.db")
    (row,) = store.load("t").values()
    row.size += 100  # the old file had grown by 100 unread bytes
    store.save("t", [row], [])
    store.close()
    os.unlink(app)
    write(logs / "new.tmp", *[f"n{i}" for i in range(5)])
    os.rename(logs / "new.tmp", app)
    st = os.stat(app)
    store = CheckpointStore(tmp_path / "checkpoints.db")
    (row,) = store.load("t").values()
    row.dev, row.ino = st.st_dev, st.st_ino  # the inode was reused
    store.save("t", [row], [])
    store.close()
    n.start()
    n.pump()
    n.stop()

    assert [f"n{i}" for i in range(5)] == n.messages()[10:]
    assert 100 == n.lost


def test_symlink_and_target_matched_by_two_globs_are_read_once(tmp_path: Path, logs: Path) -> None:
    real = logs / "real.log"
    write(real, "one", "two")
    links = tmp_path / "links"
    links.mkdir()
    os.symlink(real, links / "link.log")
    n = Node(tmp_path, [str(links / "*.log"), str(logs / "*.log")])
    n.start()
    n.pump()
    n.stop()

    assert ["one", "two"] == n.messages()


def test_glob_matching_rotated_names_does_not_read_a_copy_twice(tmp_path: Path, logs: Path) -> None:
    app = logs / "app.log"
    write(app, *[f"a{i}" for i in range(10)])
    n = Node(tmp_path, [str(logs / "*")])
    n.start()
    n.pump()
    copytruncate(app, logs / "app.log.1")
    write(app, "b0")
    n.pump()
    n.stop()
    n.start()
    n.pump()
    n.stop()

    assert 11 == len(n.messages())
    assert 11 == len(set(n.messages()))


class TestFirstStart:
    def test_first_start_is_recorded_before_anything_is_read(
        self, tmp_path: Path, logs: Path
    ) -> None:
        """Killed before its first checkpoint, the agent's next start is not a first
        start: a file rotated meanwhile is read, not skipped as history."""
        app = logs / "app.log"
        write(app, *[f"a{i}" for i in range(5)])
        n = node(tmp_path, logs, read_from="end")
        n.start()
        n.kill()
        os.rename(app, logs / "app.log.1")
        write(app, "b0")
        n.start()
        n.pump()
        n.stop()

        assert ["b0"] == n.messages()

        assert CheckpointStore(tmp_path / "checkpoints.db").has_started("t")

    def test_files_skipped_at_the_first_start_stay_skipped(
        self, tmp_path: Path, logs: Path
    ) -> None:
        app = logs / "app.log"
        write(logs / "app.log.1", "history")
        write(app, "before")
        n = node(tmp_path, logs, read_from="end")
        n.start()
        n.pump()
        write(app, "after")
        n.pump()
        n.kill()
        n.start()
        n.pump()
        n.stop()

        assert ["after"] == n.messages()

    def test_pod_created_while_down_is_read_from_its_start(
        self, tmp_path: Path, logs: Path
    ) -> None:
        """read_from applies to the first start only: a new file with a rotated sibling,
        both created while the agent was down, is read whole."""
        write(logs / "old.log", "x")
        n = node(tmp_path, logs, read_from="end")
        n.start()
        n.pump()
        n.stop()
        write(logs / "new.log", "r0", "r1")
        os.rename(logs / "new.log", logs / "new.log.1")
        write(logs / "new.log", "l0")
        n.start()
        n.pump()
        n.stop()

        assert ["l0", "r0", "r1"] == sorted(n.messages())


class TestCheckpointStore:
    def test_a_key_saved_and_deleted_in_one_call_is_kept(self, tmp_path: Path) -> None:
        store = CheckpointStore(tmp_path / "ck.db")
        row = Checkpoint("1:2:ab", "/x", 5, 9, False, 0.0)
        store.save("t", [row], ["1:2:ab"])

        assert ["1:2:ab"] == list(store.load("t"))

    def test_a_failed_save_keeps_finished_rows_for_the_next(
        self, tmp_path: Path, logs: Path
    ) -> None:
        app = logs / "app.log"
        write(app, "a")
        n = node(tmp_path, logs)
        t = n.start()
        n.pump()
        os.rename(app, logs / "app.log.1")
        write(app, "b")
        real_save = t.checkpoints.save
        calls = {"n": 0}

        def failing(*a: object, **kw: object) -> None:
            calls["n"] += 1
            raise OSError(28, "No space left on device")

        t.checkpoints.save = failing  # type: ignore[method-assign]
        n.pump()
        t.checkpoints.save = real_save  # type: ignore[method-assign]
        t.save_checkpoints()
        rows = t.checkpoints.load("t")
        n.stop()

        assert calls["n"] > 0
        assert any(r.finished and r.path.endswith("app.log.1") for r in rows.values())


class TestRotationSplitsALine:
    T = "2025-01-15T10:00:00.000000001Z"

    def cri(self, tag: str, msg: str, stream: str = "stdout") -> str:
        return f"{self.T} {stream} {tag} {msg}"

    def test_both_halves_are_flagged_partial(self, tmp_path: Path, logs: Path) -> None:
        """P in the rotated file, F in the new one: two events, both flagged partial, the
        old file's half first; the other stream's first line is not flagged."""
        app = logs / "app.log"
        write(app, self.cri("F", "before"), self.cri("P", "head-"))
        n = node(tmp_path, logs, fmt="auto")
        n.start()
        n.pump()
        os.rename(app, logs / "app.log.20250115-100000")
        write(app, self.cri("F", "err", "stderr"), self.cri("F", "tail"), self.cri("F", "after"))
        n.pump()
        n.stop()

        got = [(m, flags) for _, _, m, _, flags in n.stored]
        assert [
            ("before", ()),
            ("head-", ("partial",)),
            ("err", ()),
            ("tail", ("partial",)),
            ("after", ()),
        ] == got

    def test_pod_file_lines_are_plain(self, tmp_path: Path, logs: Path) -> None:
        """A file found with format plain (an application's own log, as named by
        kubelogs.io/files) is not parsed as CRI, even when the source's format is auto."""
        from kubelogs.tailing.discovery import Match
        from support.tailsim import ctx

        app = logs / "app.txt"
        write(app, "2025-01-15 INFO started", "plain line")
        n = node(tmp_path, logs, fmt="auto")
        t = n.start()
        t.s.extra_paths = lambda: [Match(str(app), ctx, "plain")]
        n.pump()
        n.stop()

        assert [("2025-01-15 INFO started", ()), ("plain line", ())] == [
            (m, f) for _, _, m, _, f in n.stored
        ]
