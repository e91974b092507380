"""Base classes of every component's config model, and what `build()` receives.

A component type is a pydantic model registered under its YAML ``type`` name (see
`kubelogs.config.registry`). `build()` turns the validated model into the runtime object;
it may open files and sockets, `validate` (pydantic) must not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from kubelogs.config.buffer import BufferConfig, MemoryBufferConfig

if TYPE_CHECKING:
    from kubelogs.pipeline.runtime import Sink, Source, Transform
    from kubelogs.telemetry.metrics import Metrics


class StrictModel(BaseModel):
    """Unknown keys are errors; field docstrings are the documentation."""

    model_config = ConfigDict(
        extra="forbid", use_attribute_docstrings=True, frozen=True, populate_by_name=True
    )


@dataclass
class BuildContext:
    """What a component may use while it is built and run."""

    component_id: str
    data_dir: Path
    node_name: str
    metrics: Metrics
    shared: dict[str, Any] = field(default_factory=dict)
    """Services shared between components (one checkpoint store, one pod watcher)."""


class ComponentConfig(StrictModel):
    kind: ClassVar[Literal["source", "transform", "sink"]]
    type: str
    """The component type, as registered (e.g. ``kubernetes_logs``)."""


class SourceConfig(ComponentConfig):
    kind: ClassVar[Literal["source", "transform", "sink"]] = "source"

    def build(self, cx: BuildContext) -> Source:
        raise TypeError(f"{type(self).__name__} does not build a source")


class TransformConfig(ComponentConfig):
    kind: ClassVar[Literal["source", "transform", "sink"]] = "transform"
    inputs: list[str]
    """Components whose output this one reads; globs allowed (``k8s_*``)."""

    def build(self, cx: BuildContext) -> Transform:
        raise TypeError(f"{type(self).__name__} does not build a transform")


class SinkConfig(ComponentConfig):
    kind: ClassVar[Literal["source", "transform", "sink"]] = "sink"
    inputs: list[str]
    """Components whose output this one reads; globs allowed."""
    buffer: BufferConfig = Field(default_factory=MemoryBufferConfig)
    """Where events wait for this sink: ``{type: memory}`` or ``{type: disk, max_size,
    when_full}`` (durable, acknowledged upstream once on disk; `kubelogs.buffer.disk`)."""

    def build(self, cx: BuildContext) -> Sink:
        raise TypeError(f"{type(self).__name__} does not build a sink")
