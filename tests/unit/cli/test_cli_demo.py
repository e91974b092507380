"""`kubelogs demo`: refuses bad arguments in one line, prints its searches at the start."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kubelogs.cli import demo
from support.waiting import wait_for


def run_demo(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kubelogs")
    demo.register(parser.add_subparsers())
    args = parser.parse_args(["demo", *argv])
    return int(args.func(args))


@pytest.mark.parametrize(
    "argv",
    [
        ["--containers", "0"],
        ["--rate", "0"],
        ["--rate", "-1"],
        ["--duration", "soon"],
    ],
    ids=["containers-0", "rate-0", "rate-negative", "bad-duration"],
)
def test_bad_arguments_are_one_line_usage_errors(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # --duration bounds the run where a bad value used to be accepted (it ran forever).
    rc = run_demo(["--dir", str(tmp_path / "d"), "--duration", "2s", *argv])

    err = capsys.readouterr().err
    assert 1 == rc
    assert 1 == len(err.splitlines())
    assert err.startswith("kubelogs demo: ")
    assert not (tmp_path / "d").exists()


def test_dir_onto_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("x")

    assert 1 == run_demo(["--dir", str(tmp_path / "f")])
    assert "is not a directory" in capsys.readouterr().err


def test_dir_with_a_node_tree_it_did_not_write_is_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keep = tmp_path / "node/var/lib/data"
    keep.mkdir(parents=True)

    assert 1 == run_demo(["--dir", str(tmp_path), "--duration", "1s"])
    assert keep.is_dir()
    assert "no .kubelogs-generated file" in capsys.readouterr().err


def test_plain_status_waits_for_stored_events_and_shows_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    view = demo._StatusView(tmp_path / "no-store-yet")

    view.update(0, 0)
    first = capsys.readouterr().out
    view.update(120, 100)
    second = capsys.readouterr().out

    assert "" == first
    assert "120 lines written, 100 events stored" in second


def test_store_and_searches_are_printed_before_the_pods_stop(tmp_path: Path) -> None:
    """`--follow` in the example list is only useful while the demo runs."""
    # --duration: the demo ends by itself even if this test never interrupts it.
    argv = ["demo", "--dir", str(tmp_path), "--rate", "50", "--duration", "60s"]
    with subprocess.Popen(
        [sys.executable, "-m", "kubelogs", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    ) as proc:
        try:
            assert proc.stdout is not None
            head: list[str] = []
            while not head or not head[-1].startswith("Press Ctrl-C"):
                line = proc.stdout.readline()
                assert line, "the demo ended before saying how to stop it"
                head.append(line)
            proc.send_signal(signal.SIGINT)
            wait_for(lambda: proc.poll() is not None, timeout=60, what="demo to stop")
            tail = proc.stdout.read()
        finally:
            if proc.poll() is None:
                proc.kill()
            err = proc.communicate()[1]

    text = "".join(head)
    assert 0 == proc.returncode, err
    assert str(tmp_path / "store") in text
    assert "--follow" in text
    assert "events are what is stored" in text
    assert "--follow" in tail
