"""Help texts and `kubelogs version` (issue 10 item 6)."""

from __future__ import annotations

import argparse
import re
from importlib import metadata

import pytest

from kubelogs.cli.main import build_parser, main

COMMANDS = ["run", "validate", "search", "generate", "demo", "version"]


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def help_of(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert 0 == done.value.code
    return capsys.readouterr().out


class TestHelp:
    def test_every_command_is_listed(self) -> None:
        """The commands of DESIGN.md section 3 that exist today all register."""
        assert set(COMMANDS) <= set(subparsers())

    @pytest.mark.parametrize("command", COMMANDS)
    def test_every_command_has_a_description_and_an_example(
        self, command: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`kubelogs COMMAND --help` says what it does and shows how to call it."""
        text = help_of(command, capsys)

        assert subparsers()[command].description
        assert "example" in text
        assert f"kubelogs {command}" in text.split("example", 1)[1]

    @pytest.mark.parametrize("command", COMMANDS)
    def test_every_default_is_shown(self, command: str, capsys: pytest.CaptureFixture[str]) -> None:
        """An option with a default mentions it in its help line."""
        text = " ".join(help_of(command, capsys).split("options:", 1)[1].split())
        parser = subparsers()[command]

        for action in parser._actions:
            default = action.default
            if not action.option_strings or default in (None, False, argparse.SUPPRESS):
                continue
            block = text.split(action.option_strings[-1], 1)[1]
            nxt = re.search(r" -{1,2}[a-z]", block)
            own = block[: nxt.start()] if nxt else block
            assert "default" in own.lower(), (command, action.option_strings)

    def test_debug_is_accepted_before_and_after_the_command(self) -> None:
        """`kubelogs --debug validate` and `kubelogs validate --debug` both parse."""
        parser = build_parser()

        before = parser.parse_args(["--debug", "version"])
        after = parser.parse_args(["version", "--debug"])
        neither = parser.parse_args(["version"])

        expected = (True, True, False)
        assert expected == (before.debug, after.debug, getattr(neither, "debug", False))


class TestVersion:
    def test_lists_every_required_distribution_with_its_version(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Every runtime requirement of the package, read from its metadata."""
        required = [
            re.match(r"[A-Za-z0-9._-]+", r).group(0)  # type: ignore[union-attr]
            for r in metadata.requires("kubelogs") or []
            if "extra" not in r
        ]

        assert 0 == main(["version"])
        out = capsys.readouterr().out

        assert required
        for name in required:
            assert f"  {name} {metadata.version(name)}" in out
