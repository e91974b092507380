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

from pathlib import Path

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from support.tailer_model import NodeModel, model_test_case

APPS = st.sampled_from(["app", "web"])


class TailerModel(NodeModel):
    @initialize(header=st.booleans(), chunk=st.sampled_from([64, 4096]))
    def setup(self, header: bool, chunk: int) -> None:
        self._setup_node("kubelogs-model-", read_chunk=chunk)
        self.header = header

    def _write(self, app: str, data: bytes) -> None:
        path: Path = self._path(app)
        if self.header and (not path.exists() or path.stat().st_size == 0):
            super()._write(app, self._line("stdout", "F", f"# {app} header"))
            self.expected[f"# {app} header"] += 1
        super()._write(app, data)

    def _msg(self) -> str:
        self.n += 1
        return f"m{self.n}"

    @rule(app=APPS, k=st.integers(1, 20), stream=st.sampled_from(["stdout", "stderr"]))
    def append(self, app: str, k: int, stream: str) -> None:
        msgs = [self._msg() for _ in range(k)]
        self._write(app, b"".join(self._line(stream, "F", m) for m in msgs))
        self.expected.update(msgs)

    @rule(app=APPS, parts=st.integers(2, 4), interleave=st.booleans())
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

    @rule(app=APPS, style=st.sampled_from(["kubelet", "numbered", "dateext"]))
    def rotate(self, app: str, style: str) -> None:
        self._rotate(app, style)

    @rule(app=APPS, style=st.sampled_from(["numbered", "dateext"]))
    def copytruncate(self, app: str, style: str) -> None:
        self._rotate(app, style, copytruncate=True)

    @invariant()
    def nothing_stored_twice(self) -> None:
        counts = self.node.counts()
        assert [] == [m for m, c in counts.items() if c > self.expected[m]]

    def check_complete(self) -> None:
        counts = self._finish()
        assert ([], []) == self._missing_and_extra(counts)
        assert 0 == self.node.lost


TestTailerModel = model_test_case(TailerModel)
