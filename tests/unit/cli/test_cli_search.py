"""`kubelogs search`: output formats, limits, counts, follow, and errors with exit codes."""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from kubelogs.cli import search
from kubelogs.store import ECS_LAYOUT, StoreReader, StoreWriter, WriteGroup
from kubelogs.store.index import FORMAT_VERSION, INDEX_NAME
from kubelogs.testing.generate import format_time
from support.store_docs import Dataset, make_dataset
from support.waiting import wait_for


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return make_dataset(seed=31, containers=4, lines=500, per_batch=100)


@pytest.fixture(scope="module")
def store(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "store"
    with StoreWriter(path, layout=ECS_LAYOUT, block_docs=300) as writer:
        writer.write(dataset.groups)
    return path


def run_search(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kubelogs")
    search.register(parser.add_subparsers())
    args = parser.parse_args(["search", *argv])
    return int(args.func(args))


def kubelogs(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubelogs", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
    )


class TestRunDirectly:
    def test_json_output_is_the_stored_documents(
        self, store: Path, capsysbinary: pytest.CaptureFixture[bytes]
    ) -> None:
        rc = run_search(["--store", str(store), "-o", "json", "--limit", "0", "stream:stderr"])

        out = capsysbinary.readouterr().out
        with StoreReader(store) as reader:
            expected = b"".join(h.doc + b"\n" for h in reader.search("stream:stderr", limit=0))
        assert 0 == rc
        assert expected == out
        assert out.count(b"\n") > 0

    def test_text_output_prints_newest_n_oldest_first(
        self, store: Path, dataset: Dataset, capsys: pytest.CaptureFixture[str]
    ) -> None:
        rc = run_search(["--store", str(store), "--limit", "7"])

        lines = capsys.readouterr().out.splitlines()
        newest = sorted(dataset.docs, key=lambda d: msgspec.json.decode(d)["@timestamp"])[-7:]
        assert 0 == rc
        assert 7 == len(lines)
        assert [ln[:24] for ln in lines] == sorted(ln[:24] for ln in lines)
        for line, raw in zip(lines, newest, strict=True):
            doc = msgspec.json.decode(raw)
            k8s = doc["kubernetes"]
            source = f"{k8s['namespace']}/{k8s['pod']['name']}/{k8s['container']['name']}"
            assert line.startswith(doc["@timestamp"][:23])
            assert line.endswith(f" {source} {doc['stream']} {doc['message']}")

    def test_count_prints_the_number_of_matches(
        self, store: Path, dataset: Dataset, capsys: pytest.CaptureFixture[str]
    ) -> None:
        expected = sum(b'"stream":"stderr"' in d for d in dataset.docs)

        rc = run_search(["--store", str(store), "--count", "stream:stderr"])

        assert 0 == rc
        assert f"{expected}\n" == capsys.readouterr().out

    def test_syntax_error_shows_a_caret_under_the_column(
        self, store: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        rc = run_search(["--store", str(store), "level:error and )"])

        err = capsys.readouterr().err.splitlines()
        assert 1 == rc
        assert "column 17" in err[0]
        assert err[1].strip() == "level:error and )"
        assert err[2].index("^") == err[1].index(")")

    def test_bad_range_value_is_a_query_error(
        self, store: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        rc = run_search(["--store", str(store), "@timestamp >= banana"])

        assert 1 == rc
        assert "not an RFC 3339 time" in capsys.readouterr().err

    def test_missing_store_is_a_usage_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        rc = run_search(["--store", str(tmp_path / "none"), "x"])

        assert 1 == rc
        assert "no store at" in capsys.readouterr().err

    def test_store_from_the_environment(
        self, store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("KUBELOGS_STORE", str(store))

        rc = run_search(["--count"])

        assert 0 == rc
        assert int(capsys.readouterr().out) > 0

    def test_store_of_the_config_given_with_c(
        self,
        store: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        # `kubelogs run -c kubelogs.yaml` then `kubelogs search -c kubelogs.yaml`: the
        # README's node config names ${NODE_NAME}, unset in the shell searching.
        monkeypatch.delenv("KUBELOGS_STORE", raising=False)
        monkeypatch.delenv("NODE_NAME", raising=False)
        config = tmp_path / "kubelogs.yaml"
        config.write_text(
            f"data_dir: {store.parent}\nnode_name: ${{NODE_NAME}}\n"
            "sources: {c: {type: kubernetes_logs}}\n"
            "sinks: {store: {type: local, inputs: [c]}}\n"
        )
        with StoreReader(store) as reader:
            expected = reader.count("stream:stderr")

        rc = run_search(["-c", str(config), "--count", "stream:stderr"])

        assert 0 == rc
        assert f"{expected}\n" == capsys.readouterr().out

    def test_a_config_without_a_local_sink_is_a_usage_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = tmp_path / "agent.yaml"
        config.write_text(
            "sources: {c: {type: kubernetes_logs}}\nsinks: {out: {type: stdout, inputs: [c]}}\n"
        )

        rc = run_search(["-c", str(config), "x"])

        assert 1 == rc
        assert capsys.readouterr().err == (
            f"kubelogs search: {config} has no sink of type local "
            "(search its sink's own store instead)\n"
        )

    def test_since_and_until_accept_times_and_durations(
        self, store: Path, dataset: Dataset, capsys: pytest.CaptureFixture[str]
    ) -> None:
        times = sorted(t for g in dataset.groups for t in g.times)
        lo = times[len(times) // 2]
        iso = format_time(lo)

        rc1 = run_search(["--store", str(store), "--count", "--since", iso])
        first = int(capsys.readouterr().out)
        rc2 = run_search(["--store", str(store), "--count", "--since", "1h"])  # data is old
        second = int(capsys.readouterr().out)
        rc3 = run_search(["--store", str(store), "--count", "--until", "1h"])
        third = int(capsys.readouterr().out)

        assert (0, 0, 0) == (rc1, rc2, rc3)
        assert sum(1 for t in times if t >= lo) == first
        assert 0 == second
        assert len(times) == third

    def test_bad_since_is_a_usage_error(
        self, store: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert 1 == run_search(["--store", str(store), "--since", "yesterday"])
        assert "--since" in capsys.readouterr().err

    def test_es_unreachable_is_one_line_without_the_password(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # bound, not listening: connections are refused
            code = run_search(["--es", f"http://u:pw-secret@127.0.0.1:{port}", "x"])
        err = capsys.readouterr().err

        assert 2 == code
        assert f"http://127.0.0.1:{port}: unreachable" in err
        assert "pw-secret" not in err

    def test_index_without_es_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert 1 == run_search(["--index", "logs-*", "x"])
        assert "--index needs --es" in capsys.readouterr().err

    def test_newer_store_format_is_refused(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        StoreWriter(tmp_path / "s", layout=ECS_LAYOUT).close()
        with sqlite3.connect(tmp_path / "s" / INDEX_NAME) as db:
            db.execute(
                "UPDATE meta SET value = ? WHERE key = 'format_version'",
                (str(FORMAT_VERSION + 1),),
            )

        assert 1 == run_search(["--store", str(tmp_path / "s")])
        assert "newer kubelogs" in capsys.readouterr().err

    def test_damaged_index_is_a_runtime_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (tmp_path / "s").mkdir()
        (tmp_path / "s" / INDEX_NAME).write_bytes(b"garbage" * 1000)

        assert 2 == run_search(["--store", str(tmp_path / "s")])
        assert "cannot be read" in capsys.readouterr().err


class TestErgonomics:
    """Issue 10: what a new user types, and zeros that used to be silent."""

    def test_several_words_are_one_query_joined_by_and(
        self, store: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with StoreReader(store) as reader:
            expected = reader.count("cache and refreshing")
            either = reader.count("(request and failed) or cache")

        rc = run_search(["--store", str(store), "--count", "cache", "refreshing"])
        joined = int(capsys.readouterr().out)
        rc2 = run_search(["--store", str(store), "--count", "request failed", "or", "cache"])
        alternatives = int(capsys.readouterr().out)

        assert (0, 0) == (rc, rc2)
        assert 0 < expected == joined
        assert either == alternatives

    @pytest.mark.parametrize("flag", ["-n", "--tail", "--limit"])
    def test_n_and_tail_are_limit(
        self, store: Path, flag: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert 0 == run_search(["--store", str(store), flag, "4"])
        assert 4 == len(capsys.readouterr().out.splitlines())

    def test_raw_output_is_the_message_alone(
        self, store: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        rc = run_search(["--store", str(store), "-o", "raw", "-n", "5", "stream:stderr"])

        with StoreReader(store) as reader:
            hits = reader.search("stream:stderr", limit=5)
        expected = "".join(msgspec.json.decode(h.doc)["message"] + "\n" for h in hits)
        assert 0 == rc
        assert expected == capsys.readouterr().out

    def test_times_are_utc_unless_local(
        self, store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        import time

        monkeypatch.setenv("TZ", "Asia/Kolkata")
        time.tzset()
        try:
            run_search(["--store", str(store), "-n", "1"])
            utc = capsys.readouterr().out
            run_search(["--store", str(store), "-n", "1", "--utc"])
            explicit = capsys.readouterr().out
            run_search(["--store", str(store), "-n", "1", "--local"])
            local = capsys.readouterr().out
        finally:
            monkeypatch.delenv("TZ")
            time.tzset()

        assert utc == explicit
        assert utc.split()[0].endswith("Z")
        assert local.split()[0].endswith("+05:30")
        assert utc.split()[1:] == local.split()[1:]

    def test_a_field_no_document_has_is_named_with_a_suggestion(
        self, store: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        rc = run_search(["--store", str(store), "--count", "kubernetes.namspace:payments"])

        captured = capsys.readouterr()
        assert 0 == rc
        assert "0\n" == captured.out
        assert (
            "no document has field kubernetes.namspace; did you mean kubernetes.namespace?"
            in captured.err
        )

    def test_a_range_before_the_newest_event_says_so_instead_of_blaming_the_field(
        self, store: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        # The dataset's events are from 2025: `--since 15m` (as the README shows) finds
        # none, and "no document has field kubernetes.namespace; did you mean
        # kubernetes.namespace?" was the answer a new user got.
        with StoreReader(store) as reader:
            stats = reader.stats()
        assert stats.min_time is not None
        assert stats.max_time is not None
        first, last = search.format_time(stats.min_time), search.format_time(stats.max_time)

        rc = run_search(["--store", str(store), "--since", "15m", "kubernetes.namespace:x"])
        since = capsys.readouterr()
        rc_count = run_search(
            ["--store", str(store), "--count", "--until", "2001-01-01T00:00:00Z", "error"]
        )
        until = capsys.readouterr()
        run_search(["--store", str(store), "--count", "--since", "3650d", "kubernetes.namspace:x"])
        inside = capsys.readouterr()

        assert 0 == rc == rc_count
        assert "" == since.out
        assert since.err == (
            f"kubelogs search: no events in the time range: the store holds events from "
            f"{first} to {last} (widen or drop --since)\n"
        )
        assert "0\n" == until.out
        assert until.err.endswith("(widen or drop --until)\n")
        assert "did you mean kubernetes.namespace?" in inside.err

    def test_a_cut_output_says_how_much_was_left_on_a_terminal(
        self, store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with StoreReader(store) as reader:
            total = reader.count("stream:stdout")
        run_search(["--store", str(store), "-n", "7", "stream:stdout"])
        piped = capsys.readouterr().err
        monkeypatch.setattr(search, "_stderr_is_terminal", lambda: True)

        run_search(["--store", str(store), "-n", "7", "stream:stdout"])
        terminal = capsys.readouterr().err
        run_search(["--store", str(store), "-n", "0", "stream:stdout"])
        everything = capsys.readouterr().err

        assert "" == piped
        assert f"7 of {total} shown (use --limit 0 for all)\n" == terminal
        assert "" == everything

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["--since", "15"], "add a unit"),
            (["--until", "1h", "--since", "30m"], "is after --until"),
            (["--follow", "--until", "1h"], "--follow and --until"),
        ],
    )
    def test_ambiguous_or_empty_time_ranges_are_refused(
        self, store: Path, argv: list[str], message: str
    ) -> None:
        # A subprocess with a deadline: `--follow --until` used to follow forever.
        r = kubelogs("search", "--store", str(store), *argv)

        assert 1 == r.returncode
        assert 1 == len(r.stderr.splitlines())
        assert message in r.stderr


class TestCommandLine:
    """Through `python -m kubelogs`, as users run it."""

    def test_search_json_through_the_cli(self, store: Path) -> None:
        r = kubelogs("search", "--store", str(store), "-o", "json", "--limit", "3", "error")

        with StoreReader(store) as reader:
            expected = "".join(h.doc.decode() + "\n" for h in reader.search("error", limit=3))
        assert 0 == r.returncode, r.stderr
        assert expected == r.stdout

    def test_a_missing_config_is_one_line(self, tmp_path: Path) -> None:
        result = kubelogs("search", "-c", str(tmp_path / "nope.yaml"), "x")

        assert 1 == result.returncode
        assert result.stderr == (
            f"kubelogs search: error: {tmp_path / 'nope.yaml'}: no such config file\n"
        )

    def test_syntax_error_exit_code_through_the_cli(self, store: Path) -> None:
        r = kubelogs("search", "--store", str(store), '"unterminated')

        assert 1 == r.returncode
        assert "^" in r.stderr

    def test_follow_prints_new_matches_until_interrupted(self, tmp_path: Path) -> None:
        path = tmp_path / "s"
        with StoreWriter(path, layout=ECS_LAYOUT) as writer:
            writer.write([WriteGroup("f", [0], [1], [b'{"message":"first hello"}'])])
            with subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kubelogs",
                    "search",
                    "--store",
                    str(path),
                    "-f",
                    "-o",
                    "json",
                    "hello",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ) as proc:
                try:
                    assert proc.stdout is not None
                    first = proc.stdout.readline()
                    writer.write(
                        [
                            WriteGroup(
                                "f",
                                [1, 2],
                                [2, 3],
                                [b'{"message":"nope"}', b'{"message":"second hello"}'],
                            )
                        ]
                    )
                    second = proc.stdout.readline()
                    proc.send_signal(signal.SIGINT)
                    wait_for(lambda: proc.poll() is not None, timeout=30, what="search to exit")
                finally:
                    if proc.poll() is None:
                        proc.kill()
                    err = proc.communicate()[1]

        assert '{"message":"first hello"}\n' == first
        assert '{"message":"second hello"}\n' == second
        assert 0 == proc.returncode, err
