"""`parse_rfc3339_ns`: container runtime timestamps -> integer nanoseconds since the epoch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from kubelogs.codecs.timestamps import parse_rfc3339_ns

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def expected_ns(dt: datetime, nanos: int = 0) -> int:
    """Nanoseconds since the epoch of the whole-second `dt` plus `nanos`, via datetime."""
    return (dt - EPOCH) // timedelta(seconds=1) * 1_000_000_000 + nanos


FEB_15 = datetime(2021, 2, 15, 10, 0, 0, tzinfo=UTC)


class TestFastPath:
    def test_nine_digit_fraction_with_z_gives_exact_nanoseconds(self) -> None:
        """containerd's usual shape keeps every nanosecond digit."""
        expected = expected_ns(FEB_15, 123_456_789)

        actual = parse_rfc3339_ns(b"2021-02-15T10:00:00.123456789Z")

        assert expected == actual

    def test_nine_digit_fraction_of_all_zeros_is_the_whole_second(self) -> None:
        """A fraction of zeros adds nothing."""
        expected = expected_ns(FEB_15)

        actual = parse_rfc3339_ns(b"2021-02-15T10:00:00.000000000Z")

        assert expected == actual

    def test_same_second_with_different_fractions_gives_different_values(self) -> None:
        """The per-second cache does not leak one line's fraction into the next."""
        expected = [expected_ns(FEB_15, 1), expected_ns(FEB_15, 999_999_999)]

        actual = [
            parse_rfc3339_ns(b"2021-02-15T10:00:00.000000001Z"),
            parse_rfc3339_ns(b"2021-02-15T10:00:00.999999999Z"),
        ]

        assert expected == actual

    def test_non_digit_in_nine_digit_fraction_is_rejected(self) -> None:
        """A fast-path-shaped timestamp with a letter in the fraction is not a timestamp."""
        expected = None

        actual = parse_rfc3339_ns(b"2021-02-15T10:00:00.12345a789Z")

        assert expected == actual


class TestShorterFractions:
    @pytest.mark.parametrize(
        ("text", "nanos"),
        [
            (b"2021-02-15T10:00:00.1Z", 100_000_000),
            (b"2021-02-15T10:00:00.12Z", 120_000_000),
            (b"2021-02-15T10:00:00.123Z", 123_000_000),
            (b"2021-02-15T10:00:00.000001Z", 1_000),
            (b"2021-02-15T10:00:00.12345678Z", 123_456_780),
        ],
    )
    def test_trimmed_fraction_is_scaled_to_nanoseconds(self, text: bytes, nanos: int) -> None:
        """Go's RFC3339Nano drops trailing zeros; the digits keep their place value."""
        expected = expected_ns(FEB_15, nanos)

        actual = parse_rfc3339_ns(text)

        assert expected == actual

    def test_no_fraction_is_the_whole_second(self) -> None:
        """A timestamp without a fraction is exactly its second."""
        expected = expected_ns(FEB_15)

        actual = parse_rfc3339_ns(b"2021-02-15T10:00:00Z")

        assert expected == actual

    def test_lowercase_z_is_accepted(self) -> None:
        """RFC 3339 allows a lowercase `z`."""
        expected = expected_ns(FEB_15)

        actual = parse_rfc3339_ns(b"2021-02-15T10:00:00z")

        assert expected == actual

    def test_more_than_nine_fraction_digits_are_cut_to_nanoseconds(self) -> None:
        """Digits past the ninth are below nanosecond precision and are dropped."""
        expected = expected_ns(FEB_15, 123_456_789)

        actual = parse_rfc3339_ns(b"2021-02-15T10:00:00.1234567891Z")

        assert expected == actual


class TestNumericOffsets:
    @pytest.mark.parametrize(
        ("text", "tz", "nanos"),
        [
            (b"2021-02-15T10:00:00+02:00", timezone(timedelta(hours=2)), 0),
            (b"2021-02-15T10:00:00-05:30", timezone(-timedelta(hours=5, minutes=30)), 0),
            (b"2021-02-15T10:00:00.5+02:00", timezone(timedelta(hours=2)), 500_000_000),
            (
                b"2021-02-15T10:00:00.123456789-05:30",
                timezone(-timedelta(hours=5, minutes=30)),
                123_456_789,
            ),
            (b"2021-02-15T10:00:00+00:00", UTC, 0),
        ],
    )
    def test_numeric_offset_is_converted_to_utc(
        self, text: bytes, tz: timezone, nanos: int
    ) -> None:
        """CRI-O's `+HH:MM` offsets give the same instant as datetime computes."""
        expected = expected_ns(datetime(2021, 2, 15, 10, 0, 0, tzinfo=tz), nanos)

        actual = parse_rfc3339_ns(text)

        assert expected == actual


class TestGarbage:
    @pytest.mark.parametrize(
        "text",
        [
            b"",
            b"garbage",
            b"stdout F hello",
            b"2021-02-15T10:00:00",
            b"2021-02-15T10:00:00.Z",
            b"2021-02-15T10:00:00.12a4Z",
            b"2021-02-15T10:00:00+0200",
            b"2021-02-15T10:00:00+aa:bb",
            b"2021-02-15T10:00:00 Z",
            b"2021-13-15T10:00:00Z",
            b"2021-02-30T10:00:00Z",
            b"2021-02-15 10:00:00Z",
            b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4\xf3\xf2\xf1\xf0\xef\xee\xedZ",
        ],
    )
    def test_not_a_timestamp_gives_none(self, text: bytes) -> None:
        """Anything that is not an RFC 3339 timestamp is None, never an exception."""
        expected = None

        actual = parse_rfc3339_ns(text)

        assert expected == actual
