"""`Channel` / `FanOut`: bounded queues with backpressure, shutdown and shared acks."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from kubelogs.pipeline.acks import AckLedger, AckToken
from kubelogs.pipeline.channels import Channel, FanOut
from kubelogs.pipeline.event import Batch, FileContext

CTX = FileContext(source_id="src", path="/var/log/x.log", file_key="1:2:f", id_prefix="p")


def batch(n: int = 1, ack: AckToken | None = None, first: int = 0) -> Batch:
    return Batch(
        ctx=CTX,
        times=[0] * n,
        messages=[f"m{first + i}" for i in range(n)],
        streams=[""] * n,
        offsets=[first + i for i in range(n)],
        ack=ack,
    )


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


class TestChannel:
    def test_batches_come_out_in_the_order_they_were_put(self) -> None:
        """A channel is FIFO."""

        async def scenario() -> list[str]:
            ch = Channel("c", capacity=10)
            ch.add_producer()
            for i in range(3):
                await ch.put(batch(first=i))
            ch.close_producer()
            return [b.messages[0] async for b in ch]

        expected_result = ["m0", "m1", "m2"]
        assert expected_result == run(scenario())

    def test_event_count_tracks_events_waiting(self) -> None:
        """`events` counts events (not batches) in the queue for the buffer metric."""

        async def scenario() -> list[int]:
            ch = Channel("c", capacity=10)
            ch.add_producer()
            counts = [ch.events]
            await ch.put(batch(3))
            await ch.put(batch(2))
            counts.append(ch.events)
            await ch.receive()
            counts.append(ch.events)
            await ch.receive()
            counts.append(ch.events)
            return counts

        expected_result = [0, 5, 2, 0]
        assert expected_result == run(scenario())

    def test_put_blocks_while_full_until_a_receive_makes_room(self) -> None:
        """Backpressure: a full channel holds the producer until the consumer takes one."""

        async def scenario() -> tuple[bool, int, bool, list[str]]:
            ch = Channel("c", capacity=2)
            ch.add_producer()
            await ch.put(batch(first=0))
            await ch.put(batch(first=1))
            reached_put = asyncio.Event()

            async def producer() -> None:
                reached_put.set()
                await ch.put(batch(first=2))

            task = asyncio.create_task(producer())
            await reached_put.wait()
            # The producer ran until it blocked inside put(); it cannot have finished.
            blocked = not task.done()
            queued = len(ch)
            first = await ch.receive()
            await task
            rest = [ch.receive_nowait(), ch.receive_nowait()]
            assert first is not None
            return (
                blocked,
                queued,
                task.done(),
                [first.messages[0]] + [b.messages[0] for b in rest if b],
            )

        expected_result = (True, 2, True, ["m0", "m1", "m2"])
        assert expected_result == run(scenario())

    def test_max_events_bounds_the_queue_by_events_but_lets_one_batch_in(self) -> None:
        """`buffer: {type: memory, max_events}`: a put waits while the events waiting
        reach the bound; a single batch larger than the bound still goes in."""

        async def scenario() -> tuple[bool, bool, int]:
            ch = Channel("c", capacity=8, max_events=10)
            ch.add_producer()
            await ch.put(batch(25))  # larger than the bound, into an empty queue
            second = asyncio.create_task(ch.put(batch(1, first=25)))
            await asyncio.sleep(0)
            blocked_when_over = not second.done()
            await ch.receive()
            await second
            await ch.put(batch(8, first=26))  # 9 waiting: under the bound
            third = asyncio.create_task(ch.put(batch(1, first=34)))
            await asyncio.sleep(0)
            blocked_at_bound = not third.done()
            third.cancel()
            return blocked_when_over, blocked_at_bound, ch.events

        assert (True, False, 10) == run(scenario())

    def test_receive_on_empty_channel_waits_for_a_put(self) -> None:
        """A consumer blocks on an empty open channel and gets the next batch put."""

        async def scenario() -> str:
            ch = Channel("c", capacity=1)
            ch.add_producer()
            waiting = asyncio.Event()

            async def consumer() -> Batch | None:
                waiting.set()
                return await ch.receive()

            task = asyncio.create_task(consumer())
            await waiting.wait()
            await ch.put(batch(first=7))
            got = await task
            assert got is not None
            return got.messages[0]

        expected_result = "m7"
        assert expected_result == run(scenario())

    def test_channel_ends_only_when_every_producer_closed(self) -> None:
        """One producer closing does not end the channel; the last one does."""

        async def scenario() -> list[str | None]:
            ch = Channel("c", capacity=4)
            ch.add_producer()
            ch.add_producer()
            received: list[str | None] = []
            ch.close_producer()
            closed_after_one = ch.closed
            await ch.put(batch(first=1))  # the second producer is still open
            ch.close_producer()
            async for b in ch:
                received.append(b.messages[0])
            received.append(await ch.receive())
            assert not closed_after_one
            assert ch.closed
            return received

        expected_result = ["m1", None]
        assert expected_result == run(scenario())

    def test_waiting_consumer_is_woken_when_the_last_producer_closes(self) -> None:
        """A consumer blocked on an empty channel sees the end when producers close."""

        async def scenario() -> list[str]:
            ch = Channel("c", capacity=4)
            ch.add_producer()
            ch.add_producer()
            waiting = asyncio.Event()

            async def consumer() -> list[str]:
                waiting.set()
                return [b.messages[0] async for b in ch]

            task = asyncio.create_task(consumer())
            await waiting.wait()
            ch.close_producer()
            await ch.put(batch(first=5))
            ch.close_producer()
            return await task

        expected_result = ["m5"]
        assert expected_result == run(scenario())

    def test_batches_queued_before_close_are_still_delivered(self) -> None:
        """Closing drains: the consumer gets everything that was put, then the end."""

        async def scenario() -> list[str]:
            ch = Channel("c", capacity=4)
            ch.add_producer()
            for i in range(3):
                await ch.put(batch(first=i))
            ch.close_producer()
            return [b.messages[0] async for b in ch]

        expected_result = ["m0", "m1", "m2"]
        assert expected_result == run(scenario())


class TestFanOut:
    def test_every_consumer_gets_every_batch(self) -> None:
        """Fan-out sends the same batch to each downstream channel."""

        async def scenario() -> list[list[str]]:
            chans = [Channel(f"c{i}", capacity=4) for i in range(3)]
            out = FanOut(chans)
            await out.send(batch(first=0))
            await out.send(batch(first=1))
            out.close()
            return [[b.messages[0] async for b in ch] for ch in chans]

        expected_result = [["m0", "m1"]] * 3
        assert expected_result == run(scenario())

    def test_ack_resolves_only_after_every_consumer_resolved(self) -> None:
        """The source's checkpoint moves only when the last of N consumers resolved."""

        async def scenario() -> tuple[int, list[int]]:
            ledger = AckLedger(0)
            token = ledger.track(100)
            chans = [Channel(f"c{i}", capacity=4) for i in range(3)]
            out = FanOut(chans)
            await out.send(batch(ack=token))
            pending = token.pending
            committed = []
            for ch in chans:
                got = await ch.receive()
                assert got is not None
                assert got.ack is not None
                got.ack.resolve()
                committed.append(ledger.committed)
            return pending, committed

        expected_result = (3, [0, 0, 100])
        assert expected_result == run(scenario())

    def test_single_consumer_does_not_fork(self) -> None:
        """With one downstream channel the token keeps one share."""

        async def scenario() -> int:
            token = AckToken(lambda: None)
            out = FanOut([Channel("c", capacity=1)])
            await out.send(batch(ack=token))
            return token.pending

        expected_result = 1
        assert expected_result == run(scenario())

    def test_no_consumer_resolves_the_batch_at_once(self) -> None:
        """A component with no downstream acknowledges what it sends."""

        async def scenario() -> int:
            ledger = AckLedger(0)
            out = FanOut([])
            await out.send(batch(ack=ledger.track(42)))
            return ledger.committed

        expected_result = 42
        assert expected_result == run(scenario())

    def test_fan_in_channel_ends_after_every_upstream_closed(self) -> None:
        """Two components writing into one channel: it ends when both closed."""

        async def scenario() -> tuple[bool, list[str]]:
            shared = Channel("sink", capacity=4)
            a, b = FanOut([shared]), FanOut([shared])
            await a.send(batch(first=1))
            a.close()
            open_after_a = not shared.closed
            await b.send(batch(first=2))
            b.close()
            return open_after_a, [x.messages[0] async for x in shared]

        expected_result = (True, ["m1", "m2"])
        assert expected_result == run(scenario())

    def test_full_consumer_blocks_the_fan_out_send(self) -> None:
        """One slow consumer holds back the producer (backpressure through fan-out)."""

        async def scenario() -> tuple[bool, bool, list[int]]:
            fast, slow = Channel("fast", capacity=8), Channel("slow", capacity=1)
            out = FanOut([fast, slow])
            await out.send(batch(first=0))
            sending = asyncio.Event()

            async def producer() -> None:
                sending.set()
                await out.send(batch(first=1))

            task = asyncio.create_task(producer())
            await sending.wait()
            blocked = not task.done()
            await slow.receive()
            await task
            return blocked, task.done(), [len(fast), len(slow)]

        expected_result = (True, True, [2, 1])
        assert expected_result == run(scenario())


@pytest.mark.parametrize("capacity", [1, 3])
def test_producer_never_gets_more_than_capacity_ahead(capacity: int) -> None:
    """Memory stays bounded: the queue never holds more than `capacity` batches."""

    async def scenario() -> tuple[int, list[str]]:
        ch = Channel("c", capacity=capacity)
        ch.add_producer()
        high_water = 0

        async def producer() -> None:
            nonlocal high_water
            for i in range(10):
                await ch.put(batch(first=i))
                high_water = max(high_water, len(ch))
            ch.close_producer()

        task = asyncio.create_task(producer())
        got = [b.messages[0] async for b in ch]
        await task
        return high_water, got

    high_water, got = run(scenario())

    assert capacity >= high_water
    assert [f"m{i}" for i in range(10)] == got


def test_a_sinks_memory_buffer_max_events_bounds_its_input_queue(tmp_path: Any) -> None:
    from kubelogs.config.loader import config_from_data
    from kubelogs.pipeline.runner import build_pipeline

    cfg = config_from_data(
        {
            "data_dir": str(tmp_path),
            "sources": {"logs": {"type": "file", "paths": [str(tmp_path / "*.log")]}},
            "sinks": {
                "bounded": {
                    "type": "blackhole",
                    "inputs": ["logs"],
                    "buffer": {"type": "memory", "max_events": 500},
                },
                "default": {"type": "blackhole", "inputs": ["logs"]},
            },
        },
        "test",
    )

    nodes = build_pipeline(cfg).nodes

    bounded, default = nodes["bounded"].channel, nodes["default"].channel
    assert bounded is not None
    assert default is not None
    assert bounded._max_events == 500
    assert default._max_events is None


def test_a_closed_fan_out_neither_re_attaches_nor_closes_twice() -> None:
    """A producer that ended while a reload held it (pipeline/swap.py): the reload's
    `detach` must not close its end a second time (the channel would end while another
    producer still feeds it), and its `attach` must not give a new channel a producer
    that will never close (the new consumer would wait for it forever)."""
    old, other, new = Channel("old", 8), Channel("other", 8), Channel("new", 8)
    other_producer = FanOut([old])
    fan = FanOut([old, other])
    fan.close()
    fan.close()
    assert not old.closed  # `other_producer` still feeds it
    fan.detach(old)
    assert not old.closed
    fan.attach(new)
    assert new.closed  # no producer: its reader ends at once
    other_producer.close()
    assert old.closed
    assert other.closed
