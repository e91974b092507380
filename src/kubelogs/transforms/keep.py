"""What a transform that drops events does with the rows it keeps (`filter`, `sample`).

The dropped events are counted as intentional discards. Their share of the batch's ack
token needs nothing: the kept rows travel on the same token (`Batch.select`). When no
row is kept, nothing downstream will ever resolve the token, so it is resolved here and
the source's checkpoint moves past the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubelogs.pipeline.event import Batch
from kubelogs.telemetry.metrics import ComponentMetrics


def keep_rows(batch: Batch, rows: Sequence[int], metrics: ComponentMetrics | None) -> Batch | None:
    """The batch of `rows` of `batch` (None if there are none)."""
    dropped = len(batch) - len(rows)
    if dropped and metrics is not None:
        metrics.discarded(dropped, intentional=True)
    if not rows:
        if batch.ack is not None:
            batch.ack.resolve()
        return None
    return batch.select(rows)
