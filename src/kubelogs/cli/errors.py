"""Turn any exception that reaches the top of a command into one line on stderr.

DESIGN.md section 3: errors are one sentence naming the file, key or address at fault;
exit 1 for usage or config errors, 2 for runtime failures. A pipeline runs under an
`asyncio.TaskGroup`, so what arrives here is often an `ExceptionGroup` wrapping the real
cause (a sink's `BrokenPipeError`, a store's lock error) next to the `CancelledError`s of
its siblings; the group is unwrapped to its leaf causes and the first one is reported.
The traceback is for developers: `--debug` or ``KUBELOGS_DEBUG=1`` prints it.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sys
import traceback
from typing import TextIO

from kubelogs.config.errors import ConfigError

DEBUG_HINT = "(run with --debug or KUBELOGS_DEBUG=1 to see the traceback)"

EXIT_CONFIG = 1
EXIT_RUNTIME = 2


def debug_requested(flag: bool = False) -> bool:
    """`--debug`, or ``KUBELOGS_DEBUG`` set to anything but empty/0/false/no."""
    env = os.environ.get("KUBELOGS_DEBUG", "").strip().lower()
    return flag or env not in ("", "0", "false", "no")


def leaf_exceptions(exc: BaseException) -> list[BaseException]:
    """The causes inside (nested) exception groups, without the `CancelledError`s that
    the task group gave the siblings of the failed task (unless nothing else is left)."""
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for sub in e.exceptions:
                walk(sub)
        else:
            leaves.append(e)

    walk(exc)
    real = [e for e in leaves if not isinstance(e, asyncio.CancelledError)]
    return real or leaves


def is_broken_pipe(exc: BaseException) -> bool:
    """True when every cause is a closed stdout pipe (`kubelogs … | head`): not an error."""
    return all(isinstance(e, BrokenPipeError) for e in leaf_exceptions(exc))


def describe(exc: BaseException) -> str:
    """One sentence for one exception, in the user's terms.

    Our own errors (config, store, Kubernetes settings) already carry a sentence naming
    the key, file or address. An `OSError` is rewritten as ``path: reason (ERRNO)`` so the
    path and the errno are both there; anything else keeps its type name, which is the
    most useful word when the message alone is terse (``KeyError: 'x'``).
    """
    if isinstance(exc, ConfigError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
        code = errno.errorcode.get(exc.errno, str(exc.errno))
        where = exc.filename if exc.filename is not None else None
        reason = f"{exc.strerror} ({code})"
        if where is not None and exc.filename2 is not None:
            return f"{where} -> {exc.filename2}: {reason}"
        return f"{where}: {reason}" if where is not None else reason
    module = type(exc).__module__
    text = str(exc)
    if module.startswith("kubelogs.") and text:
        return text
    name = type(exc).__qualname__
    if module not in ("builtins", "__main__"):
        name = f"{module}.{name}"
    return f"{name}: {text}" if text else name


def _is_config_error(exc: BaseException) -> bool:
    """Our config errors, and Kubernetes settings that cannot be resolved (a bad
    kubeconfig or CA file named in the config): the fix is in the config either way."""
    from kubelogs.kubernetes.errors import KubernetesConfigError

    return isinstance(exc, ConfigError | KubernetesConfigError)


def exit_code(exc: BaseException) -> int:
    """1 when a config or usage problem caused the failure, else 2 (runtime)."""
    if any(_is_config_error(e) for e in leaf_exceptions(exc)):
        return EXIT_CONFIG
    return EXIT_RUNTIME


def report(exc: BaseException, *, command: str, debug: bool, stream: TextIO | None = None) -> int:
    """Print `exc` as one line (plus the debug hint for runtime failures); return the
    exit code. With `debug`, the full traceback (groups included) comes first."""
    out = sys.stderr if stream is None else stream
    leaves = leaf_exceptions(exc)
    code = exit_code(exc)
    if debug:
        traceback.print_exception(exc, file=out)
    first = next((e for e in leaves if _is_config_error(e)), leaves[0])
    line = f"kubelogs {command}: error: {describe(first)}".rstrip()
    others = len({describe(e) for e in leaves} - {describe(first)})
    if others:
        line += f" (and {others} other error{'s' if others > 1 else ''})"
    if code == EXIT_RUNTIME and not debug:
        line += f" {DEBUG_HINT}"
    try:
        print(line, file=out)
        out.flush()
    except (OSError, ValueError):
        pass  # stderr itself is gone: the exit code is all that is left to say it
    return code


def silence_stdout() -> None:
    """After a closed pipe on stdout, point fd 1 at /dev/null so that the interpreter's
    final flush does not print "Exception ignored … BrokenPipeError" on the way out."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
