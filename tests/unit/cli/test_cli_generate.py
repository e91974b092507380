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
