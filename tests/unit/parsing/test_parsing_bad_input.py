"""Hostile input for every parser (property-based): random bytes decoded as the sources
decode them, huge fields, deep nesting, lines that only look like their format, and
patterns that make backtracking engines take exponential time. For all of them: no
exception, no hang, every line kept with its message, and each either parsed or
flagged ``parse_error``; the documents encode to valid JSON in both schemas."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kubelogs.codecs.document import encode_documents
from kubelogs.parsing import PARSE_ERROR, ParserConfig, build_parser
from kubelogs.parsing.json import MAX_DEPTH
from kubelogs.pipeline.event import Batch
from support.parsing import make_batch

PARSERS: list[str | ParserConfig] = [
    "json",
    "logfmt",
    "klog",
    "nginx",
    "apache",
    "syslog",
    ParserConfig(type="regex", pattern=r"^(?P<a>(a+)+)$"),
    ParserConfig(type="regex", pattern=r"(?P<x>(\w*\s*)*)!(?P<n>\d+)", types={"n": "int"}),
    ParserConfig(type="json", time_key="t", time_format="%Y-%m-%d %H:%M:%S"),
    ParserConfig(type="logfmt", time_key="ts", time_format="unix_ms", types={"n": "float"}),
    ParserConfig(type="syslog", time_key="syslog.timestamp"),
]
IDS = [p if isinstance(p, str) else f"{p.type}-{i}" for i, p in enumerate(PARSERS)]

STRUCTURE = '{}[]":,\\= <>-/.0123456789aeflnrstuIWEF\t\n\ufffd\U0001f600'
"""Characters the formats give meaning to, so random lines reach deep into parsers."""

lines = st.one_of(
    st.binary(max_size=300).map(lambda b: b.decode("utf-8", "replace")),
    st.text(alphabet=STRUCTURE, max_size=200),
    st.text(max_size=100),
)


def check(parser: str | ParserConfig, messages: Sequence[str]) -> Batch:
    batch = make_batch(list(messages))
    out = build_parser(parser)(batch)

    assert out.messages == batch.messages
    assert len(out.times) == len(out.messages)
    fields = out.fields or {}
    flags = out.flags or {}
    for row in range(len(messages)):
        parsed = row in fields
        flagged = PARSE_ERROR in flags.get(row, ())
        assert parsed != flagged, (row, messages[row])
    for schema in ("ecs", "fluentd"):
        docs = encode_documents(out, schema)
        assert len(messages) == len(docs)
        for doc in docs:
            msgspec.json.decode(doc)  # valid JSON, one object per event
    return out


@pytest.mark.parametrize("parser", PARSERS, ids=IDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(lines, max_size=12))
@example(messages=['{},{"a":[{}', "{}]}"])
@example(messages=['{"a":[', "{}]}{}"])
@example(messages=["\ufffd{\ufffd}", "\x00\x01\x7f"])
def test_random_lines_are_kept_or_parsed(parser: str | ParserConfig, messages: list[str]) -> None:
    check(parser, messages)


keys = st.sampled_from(["a", "level", "message", "log", "json", "é", ""])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='ab"\\{}[]\n', max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)
objects = st.dictionaries(keys, json_values, max_size=4).map(
    lambda d: json.dumps(d, ensure_ascii=False)
)
fragments = st.text(alphabet='{}[],:"a1 ', max_size=12)


@settings(max_examples=150, deadline=None)
@given(messages=st.lists(st.one_of(objects, fragments), max_size=8))
@example(messages=['{},{"a":[{}', "{}]}"])
@example(messages=['{"a":[', "{}]}{}"])
def test_json_batch_decoding_agrees_with_decoding_each_line(messages: list[str]) -> None:
    """The joined decode of a batch is an optimisation: it must accept exactly the
    lines a decode of each line alone accepts, with the same values."""
    out = check("json", messages)

    expected = {}
    for row, message in enumerate(messages):
        try:
            value = msgspec.json.decode(message)
        except msgspec.DecodeError:
            continue
        if isinstance(value, dict):
            expected[row] = value
    fields = out.fields or {}
    assert set(expected) == set(fields)
    for row, value in expected.items():
        moved = dict(fields[row])
        moved.pop("log", None)  # a level the parser added
        inner = moved.pop("json", {})
        assert value == {**moved, **inner}


@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH + 1, 500, 5_000, 100_000])
def test_deep_nesting_never_breaks_the_pipeline(depth: int) -> None:
    objects = '{"a":' * depth + "1" + "}" * depth
    arrays = '{"a":' + "[" * depth + "]" * depth + "}"
    open_only = "{" * depth + "}"

    out = check("json", [objects, arrays, open_only, '{"ok":1}'])

    assert out.fields is not None
    assert (0 in out.fields) == (depth < MAX_DEPTH)
    assert 3 in out.fields


def test_huge_fields_are_parsed_or_kept_whole() -> None:
    big = "x" * 1_000_000
    lines = [
        json.dumps({"level": "error", "payload": big}),
        f"level=warn msg={big}",
        '10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /' + big + ' HTTP/1.1" 200 1',
        "I0115 10:00:00.123456 1 a.go:1] " + big,
        big,
    ]

    for parser in ("json", "logfmt", "nginx", "klog", "syslog"):
        check(parser, lines)


HOSTILE = [
    "a" * 50_000 + "b",
    "a" * 50_000,
    " " * 50_000 + "!",
    "\\" * 50_000,
    '"' + "\\" * 50_000,
    '1 2 3 [x] "' + "\\x" * 25_000,
    "1 2 3 [" + "]" * 50_000,
    "<1>1 t h a p m " + '[x a="' + "\\" * 50_000,
    "<1>1 t h a p m " + '[x a="1"]' * 5_000 + "[",
    "Jan  1 00:00:00 host " + "a" * 50_000,
    "k=" * 25_000,
    'a="' + '\\"' * 25_000,
    "I0115 10:00:00.123456 " + " " * 50_000 + "1",
    "{" * 50_000,
    "[" * 50_000,
    '{"a":' * 20_000,
]


@pytest.mark.parametrize("parser", PARSERS, ids=IDS)
def test_backtracking_bait_finishes_quickly(parser: str | ParserConfig) -> None:
    """Patterns like ``(a+)+$`` take exponential time in backtracking engines on
    ``aaaa...b``; RE2 and the built-in patterns take linear time. The bound is
    generous (a loaded CI machine), the failure it catches is minutes or hours."""
    started = time.process_time()

    check(parser, HOSTILE * 4)

    assert time.process_time() - started < 30
