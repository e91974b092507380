"""`kubelogs validate [-c FILE]`: every config problem at once, as `path.to.key: message`.

It must reject whatever `kubelogs run` would reject at start-up, so it runs the same
loader (types, listen addresses, duplicate keys, the graph) and then the same path checks
`run` makes before opening anything (`data_dir` and sinks' paths creatable and writable),
without creating anything. Without `-c` it checks the config `run` would use.
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "validate",
        help="check a config file and print every problem",
        description="Check a config as `kubelogs run` would load it and print every "
        "problem as `path.to.key: message` (exit 1), or say that it is valid (exit 0). "
        "Nothing is created or started.",
        epilog="examples:\n"
        "  kubelogs validate -c kubelogs.yaml\n"
        "  kubelogs validate              # the config `kubelogs run` would use",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-c",
        "--config",
        help="the config file (default: as `kubelogs run`: $KUBELOGS_CONFIG, then "
        "/etc/kubelogs/kubelogs.yaml, then the built-in default)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: building the CLI parser must stay cheap for every command.
    from kubelogs.config.errors import ConfigFileError, ConfigInvalid
    from kubelogs.config.loader import BUILTIN_SOURCE, load_effective_config, resolve_config_path
    from kubelogs.config.paths import writable_path_problems

    path = resolve_config_path(args.config)
    source = str(path) if path is not None else BUILTIN_SOURCE
    if args.config is None:
        print(f"checking {source} (no -c given; the config `kubelogs run` would use)")
    try:
        cfg = load_effective_config(args.config)
    except ConfigFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ConfigInvalid as exc:
        _print_problems(exc.source, exc.problems)
        return 1
    problems = writable_path_problems(cfg.root.data_dir, cfg.components)
    if problems:
        _print_problems(source, problems)
        return 1
    counts = {
        k: sum(1 for c in cfg.components.values() if c.kind == k)
        for k in ("source", "transform", "sink")
    }
    summary = ", ".join(_count(counts[k], k) for k in ("source", "transform", "sink"))
    print(f"{source}: valid ({summary})")
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _print_problems(source: str, problems: list[str]) -> None:
    print(f"{source}: {len(problems)} problem(s):", file=sys.stderr)
    for problem in problems:
        print(problem, file=sys.stderr)
