"""Human units in the config file: sizes (`512MiB`) and durations (`30s`)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from kubelogs.config.units import Duration, Size, parse_duration, parse_size


class TestParseSize:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("512MiB", 512 * 1024**2),
            ("64KiB", 64 * 1024),
            ("1GiB", 1024**3),
            ("2TiB", 2 * 1024**4),
            ("1GB", 1_000_000_000),
            ("64KB", 64_000),
            ("10MB", 10_000_000),
            ("64k", 64 * 1024),
            ("1.5KiB", 1536),
            ("100", 100),
            ("100B", 100),
            (" 1 MiB ", 1024**2),
            ("0", 0),
        ],
    )
    def test_size_string_gives_bytes(self, text: str, expected: int) -> None:
        """`KiB`/`MiB`/`k` are powers of 1024, `KB`/`MB`/`GB` powers of 1000."""
        actual = parse_size(text)

        assert expected == actual

    @pytest.mark.parametrize("value", [0, 1, 1024, 10**12])
    def test_integer_is_bytes(self, value: int) -> None:
        """A plain integer is a byte count."""
        assert value == parse_size(value)

    @pytest.mark.parametrize(
        "value", ["", "abc", "MiB", "-1", "-1MiB", "1XB", "1 MiB extra", "1e3", -1, 1.5, True, None]
    )
    def test_bad_size_is_rejected(self, value: Any) -> None:
        """Anything that is not a non-negative size raises ValueError."""
        with pytest.raises(ValueError, match="size"):
            parse_size(value)


class TestParseDuration:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("30s", 30.0),
            ("1m30s", 90.0),
            ("7d", 604800.0),
            ("250ms", 0.25),
            ("1h30m", 5400.0),
            ("1.5h", 5400.0),
            ("2w", 1_209_600.0),
            ("30S", 30.0),
            ("1m500ms", 60.5),
            ("0s", 0.0),
        ],
    )
    def test_duration_string_gives_seconds(self, text: str, expected: float) -> None:
        """`ms`, `s`, `m`, `h`, `d`, `w` units, combinable as `1m30s`."""
        actual = parse_duration(text)

        assert expected == actual

    @pytest.mark.parametrize(("value", "expected"), [(30, 30.0), (1.5, 1.5), (0, 0.0)])
    def test_number_is_seconds(self, value: float, expected: float) -> None:
        """A plain number is seconds."""
        actual = parse_duration(value)

        assert expected == actual
        assert isinstance(actual, float)

    @pytest.mark.parametrize(
        "value", ["", "abc", "s", "5x", "-5s", "1m 30s", "30s30", "m30", -1, True, None, [1]]
    )
    def test_bad_duration_is_rejected(self, value: Any) -> None:
        """Anything that is not a non-negative duration raises ValueError."""
        with pytest.raises(ValueError, match="duration"):
            parse_duration(value)


class _Model(BaseModel):
    size: Size = 0
    wait: Duration = 0.0


class TestAnnotatedTypes:
    def test_pydantic_fields_accept_unit_strings(self) -> None:
        """`Size` and `Duration` fields convert while validating."""
        expected = (1024**2, 90.0)

        m = _Model.model_validate({"size": "1MiB", "wait": "1m30s"})

        assert expected == (m.size, m.wait)

    def test_pydantic_fields_reject_bad_units_with_the_reason(self) -> None:
        """A bad unit is a validation error naming the field and the bad value."""
        with pytest.raises(ValidationError) as info:
            _Model.model_validate({"size": "lots", "wait": "soon"})

        errors = info.value.errors(include_url=False)
        expected = [("size",), ("wait",)]
        assert expected == [e["loc"] for e in errors]
        assert "'lots'" in errors[0]["msg"]
        assert "'soon'" in errors[1]["msg"]
