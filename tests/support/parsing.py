"""Batches of messages, as sources make them, for the parser tests."""

from __future__ import annotations

from collections.abc import Sequence

from kubelogs.pipeline.event import Batch, FileContext

T0 = 1_736_935_200_000_000_000  # 2025-01-15T10:00:00Z


def make_batch(messages: Sequence[str], *, tstrs: bool = False) -> Batch:
    n = len(messages)
    times = [T0 + i for i in range(n)]
    return Batch(
        ctx=FileContext("src", "/var/log/pods/ns_pod_uid/c/0.log", "1:2:3", "prefix"),
        times=times,
        messages=list(messages),
        streams=["stdout"] * n,
        offsets=[100 * i for i in range(n)],
        tstrs=[f"2025-01-15T10:00:00.{i:09d}Z".encode() for i in range(n)] if tstrs else None,
    )
