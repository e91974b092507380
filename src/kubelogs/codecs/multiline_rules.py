"""Which lines belong together: the multiline presets and the custom rule.

A rule keeps a small integer *state* per open group so that a preset can be a state
machine (a Python traceback is only over once its exception line was seen; a Java
exception header joins a log message but not a finished trace), and answers:

- ``begin(line) -> state``: the state of a group that this line starts;
- ``step(state, line)``: a state ``>= 0`` when the line continues the open group, else
  ``-1 - begin(line)``: the line starts a group of its own, in that state (one call
  per line on the hot path, one regex for most presets).

A state may carry `FINAL`: the line ends its group (``end_pattern``).

Determinism matters for exact checkpoints: after a restart the tailer re-reads from the
first line of a group that was still open and must rebuild the same group, so both
answers depend only on the lines, never on time or on what came before the group.

Presets are tuned on the traces their runtimes print (tests/unit/codecs/
test_codecs_multiline_presets.py has one real-looking trace per preset).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Protocol

NO = -1
"""`_extend` helpers: the line does not continue the group."""
FINAL = 1 << 16
"""Added to a state: the line is the last of its group."""

PRESETS = ("java", "python", "go", "ruby", "dotnet", "php")


class Rule(Protocol):
    @property
    def prefilter(self) -> re.Pattern[str] | None:
        """When this does not match a line and the group's state is `plain`, `step`
        returns ``-1 - plain`` and `begin` returns `plain`: the line is a one-line event
        so far. Lets the stage skip most lines in bulk (None: every line goes through
        `step`)."""

    @property
    def plain(self) -> int: ...

    def begin(self, line: str) -> int: ...

    def step(self, state: int, line: str) -> int: ...


class _Extending(ABC):
    """`step` from an `extend(state, line) -> state | NO` and `begin`."""

    __slots__ = ()
    prefilter: re.Pattern[str] | None = None
    plain = 0

    @abstractmethod
    def begin(self, line: str) -> int:
        """The state a group that starts with `line` is in."""

    @abstractmethod
    def extend(self, state: int, line: str) -> int:
        """The state after `line` joins a group in `state`, or a negative number when
        it cannot join."""

    def step(self, state: int, line: str) -> int:
        st = self.extend(state, line)
        return st if st >= 0 else -1 - self.begin(line)


class PatternRule(_Extending):
    """The custom rule: ``start_pattern`` / ``continue_pattern`` / ``end_pattern``.

    - a line matching `start` always starts a new group;
    - with `cont`, a line continues the open group only if it matches `cont` (does *not*
      match it, with `negate`); without `cont`, every line that is not a start continues;
    - a line matching `end` is the last of its group (also the first line of a group).

    Patterns are searched (``re.search``); anchor them with ``^`` to match line starts.
    """

    __slots__ = ("_cont", "_end", "_negate", "_start")

    def __init__(
        self,
        start: re.Pattern[str] | None,
        cont: re.Pattern[str] | None,
        end: re.Pattern[str] | None,
        negate: bool = False,
    ) -> None:
        self._start = start
        self._cont = cont
        self._end = end
        self._negate = negate

    def begin(self, line: str) -> int:
        end = self._end
        return FINAL if end is not None and end.search(line) else 0

    def extend(self, state: int, line: str) -> int:
        start = self._start
        if start is not None and start.search(line):
            return NO
        cont = self._cont
        if cont is not None and (cont.search(line) is None) != self._negate:
            return NO
        end = self._end
        return FINAL if end is not None and end.search(line) else 0


# States shared by the exception presets.
_MSG = 0
"""A log message line (nothing of a trace yet)."""
_HEADER = 1
"""An exception's header line (``java.lang.X: msg``), no frames yet."""
_TRACE = 2
"""Frames seen."""

_JAVA_FRAME = (
    r"[ \t]+(?:at |\.\.\. \d+ (?:more|common frames omitted))"
    r"|[ \t]*(?:Caused by|Suppressed): "
    r"|\t"
)
_JAVA_HEADER = (
    r"(?:Exception in thread \"[^\"]*\" )?"
    r"(?:[A-Za-z_$][\w$]*\.)+[\w$]*(?:Exception|Error|Throwable)\b"
)
_JAVA = re.compile(f"(?P<frame>{_JAVA_FRAME})|(?P<header>{_JAVA_HEADER})")
_JAVA_HEADER_RE = re.compile(_JAVA_HEADER)


class JavaRule:
    """Java (and JVM languages): ``\\tat`` frames, ``Caused by:``, ``Suppressed:``,
    ``... 12 more``; an exception header (``java.lang.IllegalStateException: msg``) joins
    the log message before it (logback/log4j print message, then the exception), but a
    header after a finished trace starts a new one."""

    __slots__ = ()
    prefilter = _JAVA
    plain = _MSG

    def begin(self, line: str) -> int:
        return _HEADER if _JAVA_HEADER_RE.match(line) else _MSG

    def step(self, state: int, line: str) -> int:
        m = _JAVA.match(line)
        if m is None:
            return -1 - _MSG
        if m.lastgroup == "frame":
            return _TRACE
        return _HEADER if state == _MSG else -1 - _HEADER


_DOTNET_FRAME = re.compile(r"[ \t]+at |[ \t]*--- End of |[ \t]*---> ")
_DOTNET_HEADER = re.compile(r"(?:Unhandled exception\. )?(?:[A-Za-z_]\w*\.)+\w*Exception\b")
_DOTNET_ANY = re.compile(f"(?:{_DOTNET_FRAME.pattern})|(?:{_DOTNET_HEADER.pattern})")


class DotnetRule(_Extending):
    """.NET: ``   at Ns.Type.Method() in File.cs:line 42`` frames, ``---> inner``
    exceptions and ``--- End of inner exception stack trace ---`` markers; a header
    joins the message before it, as for Java."""

    __slots__ = ()
    prefilter = _DOTNET_ANY
    plain = _MSG

    def begin(self, line: str) -> int:
        return _HEADER if _DOTNET_HEADER.match(line) else _MSG

    def extend(self, state: int, line: str) -> int:
        if _DOTNET_FRAME.match(line):
            return _TRACE
        if state == _MSG and _DOTNET_HEADER.match(line):
            return _HEADER
        return NO


_PY_TRACEBACK = re.compile(
    r"Traceback \(most recent call last\):|[ \t]*\+ Exception Group Traceback"
)
_PY_CHAIN = re.compile(
    r"During handling of the above exception, another exception occurred:"
    r"|The above exception was the direct cause of the following exception:"
)
_PY_FRAMES = 1
_PY_EXCEPTION = 2
_PY_BLANK = 3
_PY_CHAINED = 4


class PythonRule(_Extending):
    """Python tracebacks, chained ones included: ``Traceback (most recent call last):``,
    indented frames and code, the exception line, then optionally a blank line,
    ``During handling of the above exception, …`` or ``The above exception was the
    direct cause …``, a blank line and the next traceback. A traceback joins the log
    message before it (``logging.exception``)."""

    __slots__ = ()
    prefilter = _PY_TRACEBACK
    plain = _MSG

    def begin(self, line: str) -> int:
        return _PY_FRAMES if _PY_TRACEBACK.match(line) else _MSG

    def extend(self, state: int, line: str) -> int:
        if state == _PY_FRAMES:
            if line[:1] in (" ", "\t"):
                return _PY_FRAMES
            return _PY_EXCEPTION if line else NO
        if _PY_TRACEBACK.match(line):
            return _PY_FRAMES if state in (_MSG, _PY_CHAINED) else NO
        if state == _PY_EXCEPTION:
            if not line:
                return _PY_BLANK
            return _PY_CHAINED if _PY_CHAIN.match(line) else NO
        if state == _PY_BLANK:
            return _PY_CHAINED if _PY_CHAIN.match(line) else NO
        if state == _PY_CHAINED and not line:
            return _PY_CHAINED
        return NO


_GO_START = re.compile(r"panic: |fatal error: |http: panic serving ")
_GO_CONT = re.compile(
    r"$|[ \t]|goroutine \d+ \[|created by |\[signal |panic: |exit status \d+|\S+\(.*\)$"
)
_GO_PANIC = 1


class GoRule(_Extending):
    """Go panics and fatal errors with their goroutine dumps: ``panic: …`` (or ``fatal
    error: …``), blank lines, ``goroutine N [state]:``, function lines and tab-indented
    ``file.go:12 +0x1d`` lines, ``created by …``, ``[signal …]``, ``exit status 2``."""

    __slots__ = ()
    prefilter = _GO_START
    plain = _MSG

    def begin(self, line: str) -> int:
        return _GO_PANIC if _GO_START.match(line) else _MSG

    def extend(self, state: int, line: str) -> int:
        if state == _GO_PANIC and _GO_CONT.match(line):
            return _GO_PANIC
        return NO


_RUBY_CONT = re.compile(r"[ \t]+(?:from |\S+:\d+:in )|[ \t]*\.\.\. \d+ levels\.\.\.")


class RubyRule(_Extending):
    """Ruby backtraces: ``app.rb:3:in 'foo': boom (RuntimeError)`` followed by
    ``\\tfrom app.rb:7:in '<main>'`` lines (and Rails' indented ``app/…:5:in`` lines)."""

    __slots__ = ()
    prefilter = _RUBY_CONT
    plain = _MSG

    def begin(self, line: str) -> int:
        return _MSG

    def extend(self, state: int, line: str) -> int:
        return _TRACE if _RUBY_CONT.match(line) else NO


_PHP_TRACE_START = re.compile(r"(?:PHP )?Stack trace:|\[stacktrace\]")
_PHP_CONT = re.compile(
    r"#\d+ |[ \t]|(?:PHP )?Stack trace:|PHP +\d+\. |\[stacktrace\]|\[previous exception\]"
    r'|"\}'
)
_PHP_NEXT = re.compile(r"(?:PHP )?Next ")
_PHP_BLANK = 3


class PhpRule(_Extending):
    """PHP: ``PHP Fatal error:  Uncaught Exception: …``, ``Stack trace:``, ``#0 …``
    frames, ``  thrown in … on line 3``, and a blank line then ``Next …`` for a chained
    exception; Monolog's ``[stacktrace]`` / ``[previous exception]`` blocks up to the
    ``"} []`` that closes its JSON context."""

    __slots__ = ()
    prefilter = _PHP_TRACE_START
    plain = _MSG

    def begin(self, line: str) -> int:
        return _TRACE if _PHP_TRACE_START.match(line) else _MSG

    def extend(self, state: int, line: str) -> int:
        if state == _MSG:
            return _TRACE if _PHP_TRACE_START.match(line) else NO
        if state == _PHP_BLANK:
            return _TRACE if _PHP_NEXT.match(line) else NO
        if not line:
            return _PHP_BLANK
        return _TRACE if _PHP_CONT.match(line) or _PHP_NEXT.match(line) else NO


_PRESET_RULES: dict[str, Rule] = {
    "java": JavaRule(),
    "python": PythonRule(),
    "go": GoRule(),
    "ruby": RubyRule(),
    "dotnet": DotnetRule(),
    "php": PhpRule(),
}


def preset_rule(name: str) -> Rule:
    """The rule of a preset (a name from `PRESETS`); KeyError for another name."""
    return _PRESET_RULES[name]
