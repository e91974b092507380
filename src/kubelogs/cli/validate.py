"""`kubelogs validate -c FILE`: every config problem at once, as `path.to.key: message`."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("validate", help="check a config file and print every problem")
    p.add_argument("-c", "--config", required=True, help="the config file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: building the CLI parser must stay cheap for every command.
    from kubelogs.config.errors import ConfigFileError, ConfigInvalid
    from kubelogs.config.loader import load_config

    try:
        cfg = load_config(args.config)
    except ConfigFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ConfigInvalid as exc:
        print(f"{exc.source}: {len(exc.problems)} problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    counts = {
        k: sum(1 for c in cfg.components.values() if c.kind == k)
        for k in ("source", "transform", "sink")
    }
    print(
        f"{args.config}: valid ({counts['source']} sources, {counts['transform']} transforms, "
        f"{counts['sink']} sinks)"
    )
    return 0
