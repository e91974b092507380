"""A model-based test of multiline joining in the tailing engine: random sequences of
Java stack traces and ordinary lines on two streams, split (CRI ``P``/``F``) lines,
rotations, copytruncate, time passing (groups that stop growing are sent after the
timeout), ``kill -9`` at any step and restarts.

The reference: every ordinary line is stored once as it was written, every trace once
as *one* event holding exactly its lines, every stderr line written inside a trace once
as an event of its own; nothing is counted as lost. When the multiline setting changes
while files are open (`toggle_multiline`), events may be grouped either way, but every
line is stored exactly once. Time is virtual (the stage's clock
seam) and lines are stamped with it, as a container runtime stamps them.
`KUBELOGS_MODEL_EXAMPLES` sets the number of sequences (default 40).
"""

from __future__ import annotations

from collections import Counter

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from kubelogs.codecs.multiline import MultilineSpec
from kubelogs.codecs.multiline_rules import preset_rule
from kubelogs.codecs.timestamps import format_timestamp
from kubelogs.pipeline.event import FileContext
from kubelogs.tailing.stages import NO_STAGES, FileStages
from support.tailer_model import NodeModel, model_test_case

APPS = st.sampled_from(["app", "web"])


class VirtualClock:
    def __init__(self) -> None:
        self.ns = 1_736_935_200_000_000_000

    def __call__(self) -> tuple[int, float]:
        return self.ns, self.ns / 1e9


class JavaEverywhere:
    """A resolver giving every file the java preset with the virtual clock - or nothing
    while `on` is false (a pod's annotation that comes and goes)."""

    def __init__(self, clock: VirtualClock) -> None:
        spec = MultilineSpec(rule=preset_rule("java"), timeout=1.0, clock=clock)
        self.stages = FileStages(multiline=spec, key="java")
        self.on = True
        self.changes = 0

    def version(self) -> int:
        return self.changes

    def resolve(self, ctx: FileContext) -> FileStages:
        return self.stages if self.on else NO_STAGES


class MultilineModel(NodeModel):
    pump_rounds = 10_000

    @initialize(chunk=st.sampled_from([64, 4096]))
    def setup(self, chunk: int) -> None:
        self.clock = VirtualClock()
        self.resolver = JavaEverywhere(self.clock)
        self._setup_node("kubelogs-mlmodel-", read_chunk=chunk, stages=self.resolver)

    def _stamp(self) -> str:
        return format_timestamp(self.clock.ns)

    def _id(self) -> int:
        self.n += 1
        return self.n

    @rule(app=APPS, k=st.integers(1, 6), stream=st.sampled_from(["stdout", "stderr"]))
    def append(self, app: str, k: int, stream: str) -> None:
        msgs = [f"INFO m{self._id()}" for _ in range(k)]
        self._write(app, b"".join(self._line(stream, "F", m) for m in msgs))
        self.expected.update(msgs)

    @rule(
        app=APPS,
        frames=st.integers(1, 8),
        cause=st.booleans(),
        interleave=st.integers(-1, 8),
        split=st.integers(-1, 8),
        stream=st.sampled_from(["stdout", "stderr"]),
    )
    def append_trace(
        self, app: str, frames: int, cause: bool, interleave: int, split: int, stream: str
    ) -> None:
        """A logged exception on `stream`; perhaps a line of the other stream written
        between two of its lines, perhaps one frame split by the runtime."""
        n = self._id()
        lines = [f"ERROR request {n} failed", f"java.lang.IllegalStateException: t{n}"]
        lines += [f"\tat com.example.C{n}.f{i}(C.java:{i})" for i in range(frames)]
        if cause:
            lines += [f"Caused by: java.io.IOException: c{n}", "\tat com.example.Db.q(Db.java:7)"]
            lines += ["\t... 12 more"]
        other = "stderr" if stream == "stdout" else "stdout"
        data = []
        for i, text in enumerate(lines):
            if i == split and i > 0:
                data.append(self._line(stream, "P", text[:5]))
                data.append(self._line(stream, "F", text[5:]))
            else:
                data.append(self._line(stream, "F", text))
            if i == interleave and i < len(lines) - 1:
                lone = f"INFO between {n}"
                data.append(self._line(other, "F", lone))
                self.expected[lone] += 1
        self._write(app, b"".join(data))
        self.expected["\n".join(lines)] += 1

    @rule()
    def toggle_multiline(self) -> None:
        """The setting changes while files are open (metadata arriving late, an
        annotation edited): events may then be grouped either way, but every line is
        still stored exactly once."""
        self.resolver.on = not self.resolver.on
        self.resolver.changes += 1

    @rule(seconds=st.sampled_from([0.2, 1.0, 2.0, 5.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.ns += int(seconds * 1e9)

    @rule(app=APPS)
    def rotate(self, app: str) -> None:
        self._rotate(app, "kubelet")

    @rule(app=APPS)
    def copytruncate(self, app: str) -> None:
        self._rotate(app, "numbered", copytruncate=True)

    def _lines(self, messages: Counter[str]) -> Counter[str]:
        out: Counter[str] = Counter()
        for m, c in messages.items():
            for line in m.split("\n"):
                out[line] += c
        return out

    @invariant()
    def nothing_stored_twice_or_torn(self) -> None:
        counts = self.node.counts()
        if self.resolver.changes == 0:
            assert [] == [m for m, c in counts.items() if c > self.expected[m]]
        lines, expected = self._lines(counts), self._lines(self.expected)
        assert [] == [m for m, c in lines.items() if c > expected[m]]

    def _settle(self) -> None:
        super()._settle()
        self.clock.ns += 10 * 10**9  # every open group is over
        super()._settle()

    def check_complete(self) -> None:
        counts = self._finish()
        assert self._lines(self.expected) == self._lines(counts)
        if self.resolver.changes == 0:
            assert ([], []) == self._missing_and_extra(counts)
        assert 0 == self.node.lost
        joined = [s for s in self.node.stored if "\n" in s[2]]
        assert all("multiline" in s[4] for s in joined)


TestMultilineModel = model_test_case(MultilineModel)
