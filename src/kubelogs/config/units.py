"""Human units in the config file: sizes (`512MiB`, `1GB`, `64k`) and durations (`30s`, `7d`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator

from kubelogs.config.unit_parsers import parse_duration, parse_size

Size = Annotated[int, BeforeValidator(parse_size)]
"""A byte count; accepts ``512MiB``-style strings."""
Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds; accepts ``30s``-style strings."""

__all__ = ["Duration", "Size", "parse_duration", "parse_size"]
