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
    "kubelogs.cli.ui",
    "kubelogs.cli.dlq",
    "kubelogs.cli.generate",
    "kubelogs.cli.demo",
    "kubelogs.cli.version",
    "kubelogs.cli.sidecar",
    "kubelogs.cli.tap",
    "kubelogs.cli.test",
]


# Examples shown under every subcommand's --help (argparse epilog) when its module does
# not give one; kept here so that every command has one without touching every module.
_EXAMPLES = {
    "ui": [
        "kubelogs ui --store /var/lib/kubelogs/store",
        "kubelogs ui --es http://localhost:9200 --listen 0.0.0.0:8080 --auth-token $TOKEN",
    ],
    "search": [
        "kubelogs search 'kubernetes.namespace:default and error' --since 15m",
        "kubelogs search --count 'trace_id:4bf92f35'",
        "kubelogs search --store /var/lib/kubelogs/store --output json --limit 0 > all.ndjson",
    ],
    "generate": [
        "kubelogs generate /tmp/node --lines 500000 --containers 20",
        "kubelogs generate /tmp/node --rate 200 --duration 5m   # keep appending, rotating",
    ],
    "demo": [
        "kubelogs demo                      # until Ctrl-C",
        "kubelogs demo --rate 1000 --duration 60s --dir /tmp/kubelogs-demo",
    ],
    "version": ["kubelogs version"],
}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Epilogs keep their line breaks; every option with a default says it, unless its
    help already does (several write "default 100" in their own words)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or default in (None, False, argparse.SUPPRESS)
            or isinstance(default, bool)
            or not (action.option_strings or action.nargs in ("?", "*"))
        ):
            return action.help
        return f"{text} (default: %(default)s)".lstrip()


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
    _add_debug_flag(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, sub_parser in sub.choices.items():
        _add_debug_flag(sub_parser)
        sub_parser.formatter_class = _HelpFormatter
        for action in sub_parser._actions:
            if not action.help and action.default not in (None, False, argparse.SUPPRESS):
                action.help = "(default: %(default)s)"  # argparse hides an empty help
        if not sub_parser.description:
            sub_parser.description = (helps.get(name) or "").capitalize() + "."
        if not sub_parser.epilog and name in _EXAMPLES:
            sub_parser.epilog = "examples:\n" + "\n".join(f"  {e}" for e in _EXAMPLES[name])
    return parser


def _add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """`--debug` is accepted before or after the subcommand; SUPPRESS as the default so
    that the subcommand's parser does not reset a flag given before it."""
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the full traceback of an error (also: KUBELOGS_DEBUG=1)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every exception ends here as one line and an exit code.

    Argparse's own exits (`--help`, usage errors) pass through as `SystemExit`.
    """
    from kubelogs.cli import errors

    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 1
    debug = errors.debug_requested(bool(getattr(args, "debug", False)))
    command = str(getattr(args, "command", "") or "")
    try:
        return int(func(args))
    except KeyboardInterrupt:
        return 130
    except SystemExit:
        raise
    except BaseException as exc:
        if errors.is_broken_pipe(exc):
            # `kubelogs … | head`: the reader has all it wanted; that is success.
            errors.silence_stdout()
            return 0
        return errors.report(exc, command=command, debug=debug)
