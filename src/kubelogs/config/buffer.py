"""The `buffer` key of every sink: where events wait between the pipeline and the sink.

``{type: memory}`` (the default) is the bounded in-memory queue in front of every sink:
events are acknowledged upstream only once the sink made them durable. ``{type: disk}``
puts a durable queue of segment files in between (`kubelogs.buffer.disk`): events are
acknowledged upstream once they are on disk, so a slow or unreachable store never stalls
the sources and restarts resume delivery where it stopped.

Kept free of `kubelogs.config.base` imports: `base.SinkConfig` imports this module.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from kubelogs.config.units import Duration, Size


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class MemoryBufferConfig(_Strict):
    type: Literal["memory"] = "memory"
    max_events: int | None = Field(None, ge=1)
    """Events waiting in front of the sink at most (as Vector's); the queue is also
    bounded in batches (8, a few MiB of log data), which bounds memory whatever the line
    size. When full, the sources stop reading (nothing is dropped)."""


class DiskBufferConfig(_Strict):
    type: Literal["disk"]
    max_size: Size = Field(2 * 1024**3, ge=64 * 1024)
    """Bytes of segment files at most (`2GiB`); then `when_full` applies."""
    when_full: Literal["block", "drop_newest"] = "block"
    """``block``: stop taking events (the sources stop reading; files stay on disk);
    ``drop_newest``: drop the incoming events, counted in
    `kubelogs_buffer_discarded_events_total`."""
    fsync_interval: Duration = 0.05
    """Seconds between fsyncs of the active segment; events are acknowledged upstream
    once an fsync covering them returned (so this is also the added ack latency)."""


BufferConfig = Annotated[MemoryBufferConfig | DiskBufferConfig, Field(discriminator="type")]
"""One of the buffer kinds, told apart by `type`."""
