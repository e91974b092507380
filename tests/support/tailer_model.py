"""The steps the tailing engine's model-based tests share (tests/unit/tailing/
test_tailer_model.py and test_tailer_multiline_model.py): a node's log directory with
CRI files, rotation by rename and by copytruncate, and an in-process engine
(support/tailsim.py `Node`) that is started, pumped, stopped or killed (``kill -9``: a few
more reads whose batches never reach the store) at any step.

A model subclasses `NodeModel`, calls `_setup_node` from its ``@initialize`` step, adds
its own writes, rules and invariants, and states in `check_complete` what must have
been delivered once every step ran; `model_test_case` turns it into the unittest case
whose teardown runs that check. `KUBELOGS_MODEL_EXAMPLES` sets the number of sequences
(default 40; a long run by hand: ``KUBELOGS_MODEL_EXAMPLES=2000``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from support.tailsim import Node

EXAMPLES = int(os.environ.get("KUBELOGS_MODEL_EXAMPLES", "40"))
T = "2025-01-15T10:00:00.000000001Z"
"""The CRI timestamp of every line, unless a model stamps lines itself (`_stamp`)."""


def rotated_name(app: str, style: str, n: int) -> str:
    """The name of `app`'s `n`-th rotated file: kubelet's, or logrotate's (numbered or
    ``dateext``)."""
    return {
        "kubelet": f"{app}.log.20250115-1000{n:04d}",
        "numbered": f"{app}.log.{n}",
        "dateext": f"{app}.log-2025011{n:04d}",
    }[style]


class NodeModel(RuleBasedStateMachine):
    """A log directory and an engine over it; what the rules wrote is in `expected`."""

    pump_rounds = 200
    """Passes `pump` may run until nothing moves."""

    def _setup_node(self, prefix: str, **node: Any) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.logs = self.dir / "logs"
        self.logs.mkdir()
        self.node = Node(self.dir, [str(self.logs / "*.log")], fmt="auto", **node)
        self.expected: Counter[str] = Counter()
        self.n = 0
        self.rotations = 0
        self.running = False

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- writing -------------------------------------------------------------------------

    def _path(self, app: str) -> Path:
        return self.logs / f"{app}.log"

    def _stamp(self) -> str:
        return T

    def _line(self, stream: str, tag: str, msg: str) -> bytes:
        """One CRI line (`tag` ``P`` for a part of a split line, ``F`` for the last)."""
        return f"{self._stamp()} {stream} {tag} {msg}\n".encode()

    def _write(self, app: str, data: bytes) -> None:
        with open(self._path(app), "ab") as f:
            f.write(data)

    def _rotate(self, app: str, style: str, *, copytruncate: bool = False) -> None:
        """Rotate `app`'s file (if there is one) to its next `rotated_name`: renamed and a
        new file created at once (kubelet, logrotate's ``create``), or copied and
        truncated in place."""
        path = self._path(app)
        if not path.exists():
            return
        self.rotations += 1
        target = self.logs / rotated_name(app, style, self.rotations)
        if copytruncate:
            shutil.copyfile(path, target)
            os.truncate(path, 0)
        else:
            os.rename(path, target)
            path.touch()

    # -- the engine ----------------------------------------------------------------------

    @precondition(lambda self: not self.running)
    @rule()
    def start(self) -> None:
        self.node.start()
        self.running = True

    @precondition(lambda self: self.running)
    @rule()
    def pump(self) -> None:
        self.node.pump(rounds=self.pump_rounds)

    @precondition(lambda self: self.running)
    @rule(reads=st.integers(0, 3))
    def kill(self, reads: int) -> None:
        """kill -9 after a few more reads whose batches never reach the store."""
        t = self.node.tailer
        assert t is not None
        for _ in range(reads):
            for _batch in t.poll(scan=True):
                pass
        self.node.kill()
        self.running = False

    @precondition(lambda self: self.running)
    @rule()
    def stop(self) -> None:
        self.node.stop()
        self.running = False

    # -- the reference -------------------------------------------------------------------

    def _settle(self) -> None:
        """Run the engine until everything written has been delivered."""
        self.node.pump(rounds=self.pump_rounds)

    def _finish(self) -> Counter[str]:
        """Start the engine if it is down, deliver everything, stop it cleanly, and
        return how often the store holds each message."""
        if not self.running:
            self.node.start()
        self._settle()
        self.node.stop()
        self.running = False
        return self.node.counts()

    def _missing_and_extra(self, counts: Counter[str]) -> tuple[list[str], list[str]]:
        """Messages stored fewer times than written, and more times."""
        missing = [m for m, c in self.expected.items() if counts[m] < c]
        extra = [m for m, c in counts.items() if c > self.expected[m]]
        return missing, extra


def model_test_case(model: type[NodeModel]) -> type[unittest.TestCase]:
    """The test case of `model`: `EXAMPLES` sequences of up to 30 steps, each checked by
    `check_complete` (which every model defines: what must have been stored) when it
    ends."""
    if not callable(getattr(model, "check_complete", None)):
        raise TypeError(f"{model.__name__} defines no check_complete: it would check nothing")

    class Checked(model):  # type: ignore[valid-type, misc]
        def teardown(self) -> None:
            try:
                if hasattr(self, "node"):
                    self.check_complete()
            finally:
                super().teardown()

    Checked.__name__ = Checked.__qualname__ = model.__name__
    case: type[unittest.TestCase] = Checked.TestCase
    case.settings = settings(  # type: ignore[attr-defined]
        max_examples=EXAMPLES, stateful_step_count=30, deadline=None
    )
    return case
