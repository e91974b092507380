"""The ``json`` parser: objects become fields, everything else is kept raw and flagged."""

from __future__ import annotations

import pytest

from kubelogs.codecs.timestamps import format_timestamp
from kubelogs.parsing import PARSE_ERROR, ParserConfig, build_parser
from kubelogs.parsing.json import MAX_DEPTH
from support.parsing import T0, make_batch

APP_LINE = (
    '{"ts":"2025-01-15T10:00:07.250Z","level":"warn","logger":"com.example.orders.Handler",'
    '"msg":"retrying upstream call","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736",'
    '"http":{"method":"POST","path":"/api/v1/orders/42","status":503,"duration_ms":812.5},'
    '"user_id":1234}'
)


class TestJsonParser:
    def test_object_lines_become_fields_beside_the_message(self) -> None:
        batch = make_batch([APP_LINE, '{"a": 1, "b": [1, 2, {"c": null}]}'])

        out = build_parser("json")(batch)

        assert out.messages == batch.messages
        assert out.fields is not None
        assert out.fields[0]["http"]["status"] == 503
        assert out.fields[0]["logger"] == "com.example.orders.Handler"
        assert {"a": 1, "b": [1, 2, {"c": None}]} == out.fields[1]
        assert out.flags is None

    def test_level_is_normalised_into_log_level(self) -> None:
        lines = [
            '{"level":"ERROR"}',
            '{"lvl":"W"}',
            '{"severity":"Warning"}',
            '{"level":50}',
            '{"level":" Info "}',
            '{"level":"chatty"}',
            '{"level":["x"]}',
        ]

        out = build_parser("json")(make_batch(lines))

        assert out.fields is not None
        levels = [out.fields[i].get("log", {}).get("level") for i in range(len(lines))]
        assert ["error", "warn", "warn", "error", "info", None, None] == levels
        assert "ERROR" == out.fields[0]["level"]  # the application's own key is kept

    def test_levels_of_a_batch_where_every_row_or_no_row_has_one(self) -> None:
        every = ['{"level":"info","n":1}', '{"level":"E","log":"own"}', '{"level":30}']
        none = ['{"n":1}', '{"level":"chatty"}', '{"level":{"x":1}}']

        out = build_parser("json")(make_batch(every))
        quiet = build_parser("json")(make_batch(none))

        assert out.fields is not None
        assert quiet.fields is not None
        assert ["info", "error", "info"] == [out.fields[i]["log"]["level"] for i in range(3)]
        assert {"log": "own"} == out.fields[1]["json"]  # the line's own `log` moved
        assert all("log" not in quiet.fields[i] for i in range(3))

    def test_level_key_names_the_field(self) -> None:
        parser = build_parser(ParserConfig(type="json", level_key="sev"))

        out = parser(make_batch(['{"sev":"E","level":"info"}']))

        assert out.fields is not None
        assert "error" == out.fields[0]["log"]["level"]

    def test_non_json_lines_are_kept_and_flagged(self) -> None:
        lines = ["plain text", "{not json}", "", "[1, 2]", '{"a":1} {"b":2}', APP_LINE, "{"]

        out = build_parser("json")(make_batch(lines))

        assert out.messages == lines
        assert out.fields is not None
        assert [5] == sorted(out.fields)
        assert out.flags is not None
        assert {0, 1, 2, 3, 4, 6} == set(out.flags)
        assert all(f == (PARSE_ERROR,) for f in out.flags.values())

    def test_existing_flags_and_fields_are_kept(self) -> None:
        batch = make_batch(["plain", '{"a":1}']).derive(
            flags={0: ("truncated",), 1: ("truncated",)}, fields={1: {"from": "source"}}
        )

        out = build_parser("json")(batch)

        assert {0: ("truncated", PARSE_ERROR), 1: ("truncated",)} == out.flags
        assert {1: {"from": "source", "a": 1}} == out.fields

    def test_clashing_keys_go_under_json(self) -> None:
        line = (
            '{"message":"m","log":"x","@timestamp":"t","kubernetes":1,"stream":"s",'
            '"host":"h","json":2,"keep":3,"level":"info"}'
        )

        out = build_parser("json")(make_batch([line]))

        assert out.fields is not None
        assert {
            "keep": 3,
            "level": "info",
            "json": {
                "message": "m",
                "log": "x",
                "@timestamp": "t",
                "kubernetes": 1,
                "stream": "s",
                "host": "h",
                "json": 2,
            },
            "log": {"level": "info"},
        } == out.fields[0]

    def test_target_puts_everything_under_one_key(self) -> None:
        parser = build_parser(ParserConfig(type="json", target="app"))

        out = parser(make_batch(['{"message":"m","level":"E"}']))

        assert out.fields is not None
        assert {"app": {"message": "m", "level": "E"}, "log": {"level": "error"}} == out.fields[0]

    def test_messages_with_newlines_are_parsed(self) -> None:
        lines = ['{"a":\n 1}', '{"b":2}', "text\nmore", '{"c":\n']

        out = build_parser("json")(make_batch(lines))

        assert {0: {"a": 1}, 1: {"b": 2}} == out.fields
        assert out.flags is not None
        assert {2, 3} == set(out.flags)

    def test_lines_that_only_parse_together_are_not_accepted(self) -> None:
        """Two invalid lines whose join would be valid JSON values of the right count."""
        lines = ['{},{"a":[{}', "{}]}"]

        out = build_parser("json")(make_batch(lines))

        assert out.fields is None
        assert out.flags is not None
        assert {0, 1} == set(out.flags)

    def test_nesting_deeper_than_the_limit_is_kept_raw(self) -> None:
        ok = '{"a":' * (MAX_DEPTH - 1) + "1" + "}" * (MAX_DEPTH - 1)
        deep = '{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1)
        lists = '{"a":' + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "}"

        out = build_parser("json")(make_batch([ok, deep, lists, '{"b":1}']))

        assert out.fields is not None
        assert [0, 3] == sorted(out.fields)
        assert out.flags is not None
        assert {1, 2} == set(out.flags)

    @pytest.mark.parametrize("with_tstrs", [False, True])
    def test_time_key_replaces_the_event_time(self, with_tstrs: bool) -> None:
        parser = build_parser(ParserConfig(type="json", time_key="ts"))
        lines = [APP_LINE, '{"ts":"yesterday"}', '{"x":1}', "text"]

        out = parser(make_batch(lines, tstrs=with_tstrs))

        expected = 1_736_935_207_250_000_000
        assert [expected, T0 + 1, T0 + 2, T0 + 3] == out.times
        assert out.fields is not None
        assert "2025-01-15T10:00:07.250Z" == out.fields[0]["ts"]  # the original is kept
        if with_tstrs:
            assert out.tstrs is not None
            assert format_timestamp(expected).encode() == out.tstrs[0]
            assert b"2025-01-15T10:00:00.000000001Z" == out.tstrs[1]
        else:
            assert out.tstrs is None

    def test_time_key_names_the_key_as_the_line_has_it(self) -> None:
        """`time` clashes with the fluentd field and moves to `json.time`; the setting
        still names it as the application wrote it."""
        parser = build_parser(ParserConfig(type="json", time_key="time", time_format="unix"))

        out = parser(make_batch(['{"time": 1736935260, "msg": "x"}']))

        assert [T0 + 60_000_000_000] == out.times
        assert out.fields is not None
        assert {"msg": "x", "json": {"time": 1736935260}} == out.fields[0]

    @pytest.mark.parametrize(
        ("fmt", "value", "expected"),
        [
            ("unix", 1736935200, T0),
            ("unix", "1736935200.5", T0 + 500_000_000),
            ("unix_ms", 1736935200123, T0 + 123_000_000),
            ("unix_us", 1736935200000001, T0 + 1_000),
            ("unix_ns", 1736935200000000007, T0 + 7),
            ("%Y-%m-%d %H:%M:%S", "2025-01-15 10:00:00", T0),
            ("%d/%b/%Y:%H:%M:%S %z", "15/Jan/2025:11:00:00 +0100", T0),
            ("rfc3339", "2025-01-15 11:00:00+01:00", T0),
        ],
    )
    def test_time_formats(self, fmt: str, value: object, expected: int) -> None:
        import json

        parser = build_parser(ParserConfig(type="json", time_key="t.v", time_format=fmt))

        out = parser(make_batch([json.dumps({"t": {"v": value}})]))

        assert [expected] == out.times

    def test_the_input_batch_is_not_changed(self) -> None:
        batch = make_batch([APP_LINE, "text"])

        build_parser(ParserConfig(type="json", time_key="ts"))(batch)

        assert batch.fields is None
        assert batch.flags is None
        assert [T0, T0 + 1] == batch.times

    def test_an_empty_batch_passes(self) -> None:
        batch = make_batch([])

        assert build_parser("json")(batch) is batch
