"""`kubelogs test -c FILE`: run the unit tests declared under `tests:` in a config.

Exit 0 when every test passes; 1 when one fails (with a diff: ``-`` expected, ``+`` what
came out), when the config has problems (reported as `kubelogs validate` reports them),
or when it declares no test.
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "test",
        help="run the unit tests declared in a config",
        description="Run the `tests:` of a config: events are sent to a transform (or "
        "raw lines to a source, through the parser it would choose) and what comes out "
        "of it and of the transforms after it is compared with what each test expects. "
        "Nothing is started: no file is read, no sink written, no API server contacted.",
        epilog="examples:\n"
        "  kubelogs test -c kubelogs.yaml\n"
        "  kubelogs test            # the config `kubelogs run` would use",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-c",
        "--config",
        help="the config file (default: as `kubelogs run`: $KUBELOGS_CONFIG, then "
        "/etc/kubelogs/kubelogs.yaml)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kubelogs.cli.validate import _print_problems
    from kubelogs.config.errors import ConfigFileError, ConfigInvalid
    from kubelogs.config.loader import load_effective_config
    from kubelogs.pipeline.unit_test_runner import run_tests

    try:
        cfg = load_effective_config(args.config)
    except ConfigFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ConfigInvalid as exc:
        _print_problems(exc.source, exc.problems)
        return 1
    if not cfg.root.tests:
        print(f"{cfg.source}: no tests (add them under `tests:`)", file=sys.stderr)
        return 1
    results = run_tests(cfg)
    failed = 0
    for result in results:
        if result.passed:
            print(f"PASS  {result.name}")
            continue
        failed += 1
        print(f"FAIL  {result.name}")
        if result.error:
            print(f"      {result.error}")
        for problem in result.problems:
            print(f"      {problem.output}: {problem.text[0]}")
            for line in problem.text[1:]:
                print(f"        {line}")
    passed = len(results) - failed
    print(f"{passed} passed, {failed} failed ({cfg.source})")
    return 1 if failed else 0
