"""`build_parser`: the contract sources rely on - pure, never raises, the garbage
collector left as it was found."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any

import pytest

from kubelogs.parsing import PARSE_ERROR, build_parser
from kubelogs.parsing.build import _Parser
from kubelogs.parsing.rows import Finisher
from support.parsing import make_batch


def _broken(messages: Sequence[str]) -> dict[int, dict[str, Any]]:
    raise RuntimeError("a bug in a parser")


def test_a_failing_parser_flags_the_batch_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    parser = _Parser("broken", _broken, Finisher(name="broken"))
    batch = make_batch(["a", "b"]).derive(flags={1: ("truncated",)})

    first = parser(batch)
    second = parser(batch)

    assert {0: (PARSE_ERROR,), 1: ("truncated", PARSE_ERROR)} == first.flags
    assert first.flags == second.flags
    assert first.messages == batch.messages
    assert 1 == sum("the broken parser failed" in r.getMessage() for r in caplog.records)
    assert gc.isenabled()


def test_garbage_collection_is_left_as_it_was() -> None:
    parser = build_parser("json")

    parser(make_batch(['{"a":1}', "x"]))
    enabled_after = gc.isenabled()
    gc.disable()
    try:
        parser(make_batch(['{"a":1}']))
        disabled_after = not gc.isenabled()
    finally:
        gc.enable()

    assert enabled_after
    assert disabled_after


def test_build_parser_takes_annotation_text() -> None:
    out = build_parser(r"regex:^(?P<verb>[A-Z]+) ")(make_batch(["GET /", "nope"]))

    assert {0: {"verb": "GET"}} == out.fields
    assert {1: (PARSE_ERROR,)} == out.flags


def test_build_parser_rejects_invalid_text() -> None:
    with pytest.raises(ValueError, match="unknown parser 'xml'"):
        build_parser("xml")


def test_public_names_are_pinned() -> None:
    import kubelogs.parsing as parsing

    assert [
        "NORMAL_LEVELS",
        "PARSER_TYPES",
        "PARSE_ERROR",
        "BatchParser",
        "ParserConfig",
        "ParserSetting",
        "build_parser",
        "normalise_level",
        "parser_setting_from_text",
    ] == parsing.__all__
    assert all(hasattr(parsing, name) for name in parsing.__all__)
