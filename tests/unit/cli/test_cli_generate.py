"""`kubelogs generate` writes the tree and the manifest, with usage errors as exit 1."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from kubelogs.cli import generate
from kubelogs.testing.generate import Manifest


def run_generate(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kubelogs")
    generate.register(parser.add_subparsers())
    args = parser.parse_args(["generate", *argv])
    return int(args.func(args))


def test_generate_writes_a_tree_with_a_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = run_generate([str(tmp_path), "--lines", "900", "--containers", "3", "--format", "docker"])

    manifest = Manifest.load(tmp_path / "manifest.json")
    assert 0 == rc
    assert "docker" == manifest.format
    assert 900 == manifest.lines
    assert 3 == len(list((tmp_path / "var/log/containers").iterdir()))
    assert "900 lines" in capsys.readouterr().out


def test_generate_is_deterministic_through_the_cli(tmp_path: Path) -> None:
    for name in ("a", "b"):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "kubelogs",
                "generate",
                str(tmp_path / name),
                "--lines",
                "500",
                "--seed",
                "9",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert 0 == r.returncode, r.stderr
    a = Manifest.load(tmp_path / "a/manifest.json")
    b = Manifest.load(tmp_path / "b/manifest.json")

    for fa, fb in zip(a.files, b.files, strict=True):
        assert (tmp_path / "a" / fa.path).read_bytes() == (tmp_path / "b" / fb.path).read_bytes()


def test_live_mode_through_the_cli(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubelogs",
            "generate",
            str(tmp_path),
            "--rate",
            "2000",
            "--duration",
            "1s",
            "--rotate-size",
            "64KiB",
            "--containers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    manifest = Manifest.load(tmp_path / "manifest.json")
    assert 0 == r.returncode, r.stderr
    assert manifest.lines >= 2000
    assert any(f.rotated for f in manifest.files)


@pytest.mark.parametrize(
    "argv",
    [
        ["--containers", "0"],
        ["--duration", "5s"],
        ["--rate", "10", "--duration", "soon"],
        ["--rate", "10", "--rotate-size", "big"],
        ["--rate", "0", "--duration", "1s"],
    ],
)
def test_bad_arguments_are_usage_errors(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert 1 == run_generate([str(tmp_path), *argv])
    assert "kubelogs generate:" in capsys.readouterr().err


class TestOnlyReplacesWhatItWrote:
    """Issue 10: `generate DIR` removed an existing ``DIR/var`` (as root, ``/var``)."""

    def test_refuses_a_directory_it_did_not_write_and_keeps_it(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        data = tmp_path / "var/lib/mydb/data"
        data.mkdir(parents=True)
        (data / "table").write_text("precious")

        rc = run_generate([str(tmp_path), "--lines", "10"])

        err = capsys.readouterr().err
        assert 1 == rc
        assert "precious" == (data / "table").read_text()
        assert 1 == len(err.splitlines())
        assert f"{tmp_path / 'var'} exists" in err
        assert not (tmp_path / "kube-meta").exists()

    def test_refuses_a_foreign_manifest(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (tmp_path / "manifest.json").write_text("{}")

        assert 1 == run_generate([str(tmp_path), "--lines", "10"])
        assert "{}" == (tmp_path / "manifest.json").read_text()

    def test_replaces_a_tree_it_wrote(self, tmp_path: Path) -> None:
        assert 0 == run_generate([str(tmp_path), "--lines", "100", "--containers", "2"])
        assert 0 == run_generate([str(tmp_path), "--lines", "50", "--containers", "3"])

        assert 50 == Manifest.load(tmp_path / "manifest.json").lines
        assert 3 == len(list((tmp_path / "var/log/containers").iterdir()))

    @pytest.mark.parametrize("target", ["a-file", "missing/dir"])
    def test_a_file_or_a_missing_parent_is_a_one_line_error(
        self, tmp_path: Path, target: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (tmp_path / "a-file").write_text("x")

        rc = run_generate([str(tmp_path / target), "--lines", "10"])

        err = capsys.readouterr().err
        assert 1 == rc
        assert 1 == len(err.splitlines())
        assert err.startswith("kubelogs generate: ")

    def test_help_says_what_is_replaced(self) -> None:
        r = subprocess.run(
            [sys.executable, "-m", "kubelogs", "generate", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )

        assert ".kubelogs-generated" in " ".join(r.stdout.split())
