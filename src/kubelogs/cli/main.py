"""The `kubelogs` command line: parse arguments, call the library, map errors to exit codes.

Exit codes (DESIGN.md section 3): 0 ok, 1 usage or config error, 2 runtime failure.
Errors are one sentence on stderr naming the file, key or address at fault; no traceback
reaches the user for a config mistake. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from kubelogs import __version__

# Modules that add a subcommand with `register(subparsers)`.
_COMMAND_MODULES = [
    "kubelogs.cli.run",
    "kubelogs.cli.validate",
    "kubelogs.cli.search",
    "kubelogs.cli.logs",
    "kubelogs.cli.generate",
    "kubelogs.cli.demo",
    "kubelogs.cli.version",
]


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 1 (DESIGN.md section 3), not argparse's default 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kubelogs",
        description="Kubernetes cluster-level logging: node agent, aggregator, store, search.",
    )
    parser.add_argument("--version", action="version", version=f"kubelogs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 1
    try:
        return int(func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
