"""`normalise_level`: the spellings of logging libraries -> the values of `log.level`."""

from __future__ import annotations

import pytest

from kubelogs.parsing import NORMAL_LEVELS, normalise_level


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("E", "error"),
        ("ERR", "error"),
        ("error", "error"),
        ("Error", "error"),
        ("ERROR", "error"),
        ("eRrOr", "error"),
        (" error\n", "error"),
        ("W", "warn"),
        ("WARN", "warn"),
        ("warning", "warn"),
        ("I", "info"),
        ("notice", "info"),
        ("informational", "info"),
        ("F", "fatal"),
        ("panic", "fatal"),
        ("emerg", "fatal"),
        ("crit", "critical"),
        ("alert", "critical"),
        ("D", "debug"),
        ("trace", "trace"),
        (30, "info"),
        (50, "error"),
        ("60", "fatal"),
        ("verbose", "trace"),
    ],
)
def test_known_spellings(raw: object, expected: str) -> None:
    assert expected == normalise_level(raw)


@pytest.mark.parametrize("raw", ["chatty", "", None, True, 1, 3.5, ["error"], {"a": 1}, "x" * 100])
def test_unknown_values_give_no_level(raw: object) -> None:
    assert normalise_level(raw) is None


def test_every_result_is_a_normal_level() -> None:
    from kubelogs.parsing.levels import LEVELS

    assert set(LEVELS.values()) == set(NORMAL_LEVELS)
