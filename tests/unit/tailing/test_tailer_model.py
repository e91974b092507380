"""A model-based test of the tailing engine: random sequences of what happens to log
files on a node, checked against what must be delivered.

Steps: appends on two streams with split (CRI ``P``/``F``) lines interleaved, rename
rotation (kubelet's and logrotate's names, ``dateext``), copytruncate (with and without a
header line shared by every generation of a file), new files, ``kill -9`` at any step
(batches in flight are lost, the checkpoint is whatever was saved last), restarts and
passes of the engine. The engine runs in-process (support/tailsim.py) and delivers into
a store that drops resends by high-water mark, as the local store does.

The reference: every line written is stored exactly once, whole, and no byte is counted
as lost (every sequence here keeps the bytes on disk). Hypothesis shrinks a failure to a
minimal sequence of steps. `KUBELOGS_MODEL_EXAMPLES` sets the number of sequences (CI
runs the default; a long run by hand: ``KUBELOGS_MODEL_EXAMPLES=2000``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from support.tailsim import Node

EXAMPLES = int(os.environ.get("KUBELOGS_MODEL_EXAMPLES", "40"))
T = "2025-01-15T10:00:00.000000001Z"


class TailerModel(RuleBasedStateMachine):
    @initialize(header=st.booleans(), chunk=st.sampled_from([64, 4096]))
    def setup(self, header: bool, chunk: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="kubelogs-model-"))
        self.logs = self.dir / "logs"
        self.logs.mkdir()
        self.node = Node(self.dir, [str(self.logs / "*.log")], fmt="auto", read_chunk=chunk)
        self.header = header
        self.expected: Counter[str] = Counter()
        self.n = 0
        self.rotations = 0
        self.running = False
        self.apps = ["app", "web"]

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _path(self, app: str) -> Path:
        return self.logs / f"{app}.log"

    def _line(self, stream: str, tag: str, msg: str) -> bytes:
        return f"{T} {stream} {tag} {msg}\n".encode()

    def _write(self, app: str, data: bytes) -> None:
        path = self._path(app)
        fresh = not path.exists() or path.stat().st_size == 0
        with open(path, "ab") as f:
            if fresh and self.header:
                f.write(self._line("stdout", "F", f"# {app} header"))
                self.expected[f"# {app} header"] += 1
            f.write(data)

    def _msg(self) -> str:
        self.n += 1
        return f"m{self.n}"

    @rule(
        app=st.sampled_from(["app", "web"]),
        k=st.integers(1, 20),
        stream=st.sampled_from(["stdout", "stderr"]),
    )
    def append(self, app: str, k: int, stream: str) -> None:
        msgs = [self._msg() for _ in range(k)]
        self._write(app, b"".join(self._line(stream, "F", m) for m in msgs))
        self.expected.update(msgs)

    @rule(app=st.sampled_from(["app", "web"]), parts=st.integers(2, 4), interleave=st.booleans())
    def append_split(self, app: str, parts: int, interleave: bool) -> None:
        """A long stdout line split by the runtime, a stderr line written between its parts."""
        msg = self._msg()
        pieces = [f"{msg}-{i}" for i in range(parts)]
        data = [
            self._line("stdout", "P" if i < parts - 1 else "F", p) for i, p in enumerate(pieces)
        ]
        if interleave:
            other = self._msg()
            data.insert(1, self._line("stderr", "F", other))
            self.expected[other] += 1
        self._write(app, b"".join(data))
        self.expected["".join(pieces)] += 1

    @rule(
        app=st.sampled_from(["app", "web"]),
        style=st.sampled_from(["kubelet", "numbered", "dateext"]),
    )
    def rotate(self, app: str, style: str) -> None:
        path = self._path(app)
        if not path.exists():
            return
        self.rotations += 1
        os.rename(path, self._rotated_name(app, style))
        path.touch()  # kubelet and logrotate's `create` start the new file at once

    @rule(app=st.sampled_from(["app", "web"]), style=st.sampled_from(["numbered", "dateext"]))
    def copytruncate(self, app: str, style: str) -> None:
        path = self._path(app)
        if not path.exists():
            return
        self.rotations += 1
        shutil.copyfile(path, self._rotated_name(app, style))
        os.truncate(path, 0)

    def _rotated_name(self, app: str, style: str) -> Path:
        r = self.rotations
        name = {
            "kubelet": f"{app}.log.20250115-1000{r:04d}",
            "numbered": f"{app}.log.{r}",
            "dateext": f"{app}.log-2025011{r:04d}",
        }[style]
        return self.logs / name

    @precondition(lambda self: not self.running)
    @rule()
    def start(self) -> None:
        self.node.start()
        self.running = True

    @precondition(lambda self: self.running)
    @rule()
    def pump(self) -> None:
        self.node.pump()

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

    @invariant()
    def nothing_stored_twice(self) -> None:
        counts = self.node.counts()
        assert [] == [m for m, c in counts.items() if c > self.expected[m]]

    def check_complete(self) -> None:
        if not self.running:
            self.node.start()
        self.node.pump()
        self.node.stop()
        self.running = False
        counts = self.node.counts()
        missing = [m for m, c in self.expected.items() if counts[m] < c]
        extra = [m for m, c in counts.items() if c > self.expected[m]]
        assert ([], []) == (missing, extra)
        assert 0 == self.node.lost


class _Checked(TailerModel):
    def teardown(self) -> None:
        try:
            if hasattr(self, "node"):
                self.check_complete()
        finally:
            super().teardown()


_Checked.TestCase.settings = settings(max_examples=EXAMPLES, stateful_step_count=30, deadline=None)
TestTailerModel = _Checked.TestCase
