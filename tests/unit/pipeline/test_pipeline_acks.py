"""`AckToken` / `AckLedger`: a checkpoint only moves past batches every consumer resolved."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubelogs.pipeline.acks import AckLedger, AckToken


class TestAckToken:
    def test_single_consumer_token_calls_back_on_resolve(self) -> None:
        """One resolve of an unforked token runs its callback once."""
        calls: list[str] = []
        token = AckToken(lambda: calls.append("done"))

        token.resolve()

        expected_calls = ["done"]
        assert expected_calls == calls
        expected_pending = 0
        assert expected_pending == token.pending

    def test_forked_token_calls_back_only_after_every_share_resolved(self) -> None:
        """`fork(n)` adds n consumers; the callback waits for all n + 1."""
        calls: list[int] = []
        token = AckToken(lambda: calls.append(1))
        token.fork(2)
        seen = []

        for _ in range(3):
            seen.append((token.pending, len(calls)))
            token.resolve()

        expected_seen = [(3, 0), (2, 0), (1, 0)]
        assert expected_seen == seen
        expected_calls = [1]
        assert expected_calls == calls

    def test_repeated_forks_add_up(self) -> None:
        """Forks from several fan-out points accumulate."""
        token = AckToken(lambda: None)

        token.fork()
        token.fork(3)

        expected_pending = 5
        assert expected_pending == token.pending

    def test_resolving_more_often_than_shared_raises(self) -> None:
        """A second resolve of a single-consumer token is a bug and raises."""
        calls: list[int] = []
        token = AckToken(lambda: calls.append(1))
        token.resolve()

        with pytest.raises(RuntimeError, match="resolved more often"):
            token.resolve()

        expected_calls = [1]
        assert expected_calls == calls


class TestAckLedger:
    def test_new_ledger_starts_at_its_checkpoint(self) -> None:
        """The committed offset is where the file was checkpointed."""
        ledger = AckLedger(4096)

        expected = (4096, 0)
        assert expected == (ledger.committed, ledger.in_flight)

    def test_in_order_resolution_advances_batch_by_batch(self) -> None:
        """Each resolved batch moves the committed offset to its end."""
        ledger = AckLedger(0)
        tokens = [ledger.track(end) for end in (100, 200, 300)]
        committed = []

        for token in tokens:
            token.resolve()
            committed.append(ledger.committed)

        expected_committed = [100, 200, 300]
        assert expected_committed == committed
        expected_in_flight = 0
        assert expected_in_flight == ledger.in_flight

    def test_out_of_order_resolution_advances_only_the_resolved_prefix(self) -> None:
        """A later batch finishing first does not move the checkpoint past an earlier one."""
        ledger = AckLedger(0)
        first, second, third = (ledger.track(end) for end in (100, 200, 300))

        third.resolve()
        after_third = ledger.committed
        second.resolve()
        after_second = ledger.committed
        first.resolve()

        expected = (0, 0)
        assert expected == (after_third, after_second)
        expected_committed = 300
        assert expected_committed == ledger.committed
        expected_in_flight = 0
        assert expected_in_flight == ledger.in_flight

    def test_gap_in_the_middle_holds_the_checkpoint(self) -> None:
        """With 1 and 3 resolved, only 1's end is committed until 2 resolves."""
        ledger = AckLedger(50)
        first, _second, third = (ledger.track(end) for end in (100, 200, 300))

        first.resolve()
        third.resolve()

        expected = (100, 2)
        assert expected == (ledger.committed, ledger.in_flight)

    def test_forked_batch_blocks_the_checkpoint_until_every_consumer_resolved(self) -> None:
        """A batch sent to two sinks is committed only after both resolved."""
        ledger = AckLedger(0)
        token = ledger.track(100)
        token.fork()

        token.resolve()
        after_one_sink = ledger.committed
        token.resolve()

        expected = (0, 100)
        assert expected == (after_one_sink, ledger.committed)

    def test_reset_forgets_in_flight_batches(self) -> None:
        """After truncation the ledger restarts at the new offset with nothing in flight."""
        ledger = AckLedger(0)
        stale = ledger.track(100)
        ledger.track(200)

        ledger.reset(0)
        fresh = ledger.track(40)
        stale.resolve()
        after_stale = ledger.committed
        fresh.resolve()

        expected = (0, 40)
        assert expected == (after_stale, ledger.committed)
        expected_in_flight = 0
        assert expected_in_flight == ledger.in_flight

    def test_committed_never_moves_backwards(self) -> None:
        """A batch tracked with an end below the checkpoint cannot lower it."""
        ledger = AckLedger(500)
        token = ledger.track(100)

        token.resolve()

        expected_committed = 500
        assert expected_committed == ledger.committed


@st.composite
def batches_and_order(draw: st.DrawFn) -> tuple[int, list[int], list[int], list[int]]:
    """A start offset, increasing batch ends, per-batch consumer counts, a resolve order."""
    start = draw(st.integers(min_value=0, max_value=10**9))
    sizes = draw(st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=30))
    ends = []
    pos = start
    for size in sizes:
        pos += size
        ends.append(pos)
    consumers = draw(st.lists(st.integers(1, 3), min_size=len(ends), max_size=len(ends)))
    shares = [i for i, n in enumerate(consumers) for _ in range(n)]
    order = draw(st.permutations(shares))
    return start, ends, consumers, order


@given(batches_and_order())
def test_committed_is_always_the_end_of_the_longest_resolved_prefix(
    case: tuple[int, list[int], list[int], list[int]],
) -> None:
    """For any resolution order, committed == end of the longest fully resolved prefix."""
    start, ends, consumers, order = case
    ledger = AckLedger(start)
    tokens = [ledger.track(end) for end in ends]
    for token, n in zip(tokens, consumers, strict=True):
        token.fork(n - 1)
    remaining = list(consumers)

    for i in order:
        tokens[i].resolve()
        remaining[i] -= 1
        prefix = 0
        while prefix < len(ends) and remaining[prefix] == 0:
            prefix += 1
        expected = ends[prefix - 1] if prefix else start

        assert expected == ledger.committed
        assert len(ends) - prefix == ledger.in_flight
