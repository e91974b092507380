"""Config keys shared by the file-reading sources (`kubernetes_logs`, `file`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kubelogs.config.base import SourceConfig
from kubelogs.config.units import Duration, Size


class TailOptions(SourceConfig):
    exclude: list[str] = Field(default_factory=list)
    """Globs matched against the same paths as `include`; a match is not read."""
    read_from: Literal["beginning", "end"] = "beginning"
    """Where a file with no checkpoint starts on the first run. Files that appear later,
    and files in directories already followed, always start at the beginning."""
    max_line_size: Size = 1024 * 1024
    """Longer messages are cut at this size and flagged `log.flags: ["truncated"]`."""
    read_chunk: Size = 256 * 1024
    """Bytes read from one file before moving on to the next (fairness and batch size)."""
    glob_interval: Duration = 1.0
    """How often paths are globbed for new, rotated and removed files."""
    poll_interval: Duration = 0.05
    """How long to wait when no file had new data."""
    rotate_wait: Duration = 5.0
    """How long a rotated file that is not deleted is still watched for late writes."""
    checkpoint_interval: Duration = 1.0
    """How often acknowledged offsets are written to the checkpoint database."""
