"""`encode_documents` / `encode_ndjson`: batches -> the shipped JSON documents (DESIGN.md §5)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubelogs.codecs.document import encode_documents, encode_ndjson, format_timestamp
from kubelogs.codecs.records import batch_to_records
from kubelogs.kubernetes.document_meta import ContainerMeta, PodMeta, encode_meta
from kubelogs.pipeline.event import Batch, FileContext

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PATH = "/var/log/pods/default_web-7d4b9_8c1e/nginx/0.log"
T_NS = (datetime(2021, 2, 15, 10, 0, 0, tzinfo=UTC) - EPOCH) // timedelta(
    seconds=1
) * 1_000_000_000 + 123_456_789

POD = PodMeta(
    name="web-7d4b9",
    namespace="default",
    uid="8c1e",
    ip="10.244.1.5",
    node="node-1",
    labels={"app": "web", "app.kubernetes.io/name": "web"},
    owners={"deployment": "web"},
    containers={"nginx": ContainerMeta(image="nginx:1.25", container_id="containerd://3f2a")},
)

DESIGN_KUBERNETES = {
    "namespace": "default",
    "pod": {"name": "web-7d4b9", "uid": "8c1e", "ip": "10.244.1.5"},
    "container": {"name": "nginx", "id": "containerd://3f2a", "image": "nginx:1.25"},
    "node": {"name": "node-1"},
    "labels": {"app": "web", "app_kubernetes_io/name": "web"},
    "deployment": {"name": "web"},
}


def context(with_meta: bool = True) -> FileContext:
    ecs, fluentd = encode_meta(
        namespace="default",
        pod="web-7d4b9",
        pod_uid="8c1e",
        container="nginx",
        container_id="3f2a",
        node="node-1",
        pod_meta=POD,
    )
    return FileContext(
        source_id="containers",
        path=PATH,
        file_key="1:2:abc",
        id_prefix="p",
        meta_ecs=ecs if with_meta else b"",
        meta_fluentd=fluentd if with_meta else b"",
    )


def batch(
    messages: list[str],
    *,
    streams: list[str] | None = None,
    flags: dict[int, tuple[str, ...]] | None = None,
    fields: dict[int, dict[str, Any]] | None = None,
    with_meta: bool = True,
) -> Batch:
    n = len(messages)
    return Batch(
        ctx=context(with_meta),
        times=[T_NS + i for i in range(n)],
        messages=messages,
        streams=streams if streams is not None else ["stdout"] * n,
        offsets=[12345 + 100 * i for i in range(n)],
        flags=flags,
        fields=fields,
    )


def decode(docs: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(d) for d in docs]


class TestEcsDocument:
    def test_document_has_exactly_the_design_shape(self) -> None:
        """The ECS document equals DESIGN.md §5's example, field for field."""
        expected = [
            {
                "@timestamp": "2021-02-15T10:00:00.123456789Z",
                "message": "GET /healthz 200",
                "stream": "stdout",
                "log": {"file": {"path": PATH}, "offset": 12345},
                "kubernetes": DESIGN_KUBERNETES,
                "host": {"name": "node-1"},
            }
        ]

        actual = decode(encode_documents(batch(["GET /healthz 200"])))

        assert expected == actual

    def test_ecs_is_the_default_schema(self) -> None:
        """Without a schema argument the ECS layout is written."""
        b = batch(["x"])

        assert encode_documents(b, "ecs") == encode_documents(b)

    def test_flags_go_under_log_flags(self) -> None:
        """Flags appear as `log.flags`, only on the rows that have them."""
        expected = [None, ["truncated"], ["malformed", "truncated"]]

        docs = decode(
            encode_documents(
                batch(["a", "b", "c"], flags={1: ("truncated",), 2: ("malformed", "truncated")})
            )
        )

        assert expected == [d["log"].get("flags") for d in docs]
        expected_offsets = [12345, 12445, 12545]
        assert expected_offsets == [d["log"]["offset"] for d in docs]
        assert all("flags" not in d for d in docs)

    def test_parsed_fields_are_added_at_top_level_beside_message(self) -> None:
        """Parsed fields sit beside `message`, which keeps the original line."""
        line = '{"level":"info","status":200}'
        fields = {0: {"level": "info", "status": 200, "http": {"method": "GET"}}}

        (doc,) = decode(encode_documents(batch([line], fields=fields)))

        assert line == doc["message"]
        expected = ("info", 200, {"method": "GET"})
        assert expected == (doc["level"], doc["status"], doc["http"])
        expected_kubernetes = DESIGN_KUBERNETES
        assert expected_kubernetes == doc["kubernetes"]

    def test_empty_parsed_fields_still_give_valid_json(self) -> None:
        """A row whose parsed fields are `{}` (a message of `{}`) is still one JSON object."""
        expected = {
            "@timestamp": "2021-02-15T10:00:00.123456789Z",
            "message": "{}",
            "stream": "stdout",
            "log": {"file": {"path": PATH}, "offset": 12345},
            "kubernetes": DESIGN_KUBERNETES,
            "host": {"name": "node-1"},
        }

        (doc,) = decode(encode_documents(batch(["{}"], fields={0: {}})))

        assert expected == doc

    def test_empty_stream_is_left_out(self) -> None:
        """Plain files have no stream; the document has no `stream` key."""
        (doc,) = decode(encode_documents(batch(["kubelet line"], streams=[""])))

        assert "stream" not in doc

    def test_context_without_metadata_gives_only_line_fields(self) -> None:
        """With no Kubernetes metadata the document has timestamp, message, stream, log."""
        expected = [
            {
                "@timestamp": "2021-02-15T10:00:00.123456789Z",
                "message": "m",
                "stream": "stderr",
                "log": {"file": {"path": PATH}, "offset": 12345},
            }
        ]

        actual = decode(encode_documents(batch(["m"], streams=["stderr"], with_meta=False)))

        assert expected == actual

    @pytest.mark.parametrize(
        "message",
        [
            'quotes " and \\ backslashes',
            "nul \x00 byte and control \x01\x1f chars",
            "unicode é € 😀 and replacement \ufffd",
            "</script> <tag> & ampersand",
            "",
            "line\nbreak\ttab",
        ],
    )
    def test_message_round_trips_through_json(self, message: str) -> None:
        """Any message decodes back to exactly itself, in both schemas."""
        ecs = decode(encode_documents(batch([message]), "ecs"))[0]["message"]
        fluentd = decode(encode_documents(batch([message]), "fluentd"))[0]["log"]

        assert (message, message) == (ecs, fluentd)

    def test_path_with_quotes_is_escaped(self) -> None:
        """`log.file.path` is JSON-encoded, not pasted."""
        b = batch(["x"])
        b.ctx.path = '/var/log/we"ird\\path.log'

        (doc,) = decode(encode_documents(b))

        expected_path = '/var/log/we"ird\\path.log'
        assert expected_path == doc["log"]["file"]["path"]


class TestFluentdDocument:
    def test_document_uses_fluentd_field_names(self) -> None:
        """`schema: fluentd` writes fluent-plugin-kubernetes_metadata_filter's names."""
        expected = [
            {
                "@timestamp": "2021-02-15T10:00:00.123456789Z",
                "log": "GET /healthz 200",
                "stream": "stdout",
                "time": "2021-02-15T10:00:00.123456789Z",
                "docker": {"container_id": "3f2a"},
                "kubernetes": {
                    "namespace_name": "default",
                    "pod_name": "web-7d4b9",
                    "pod_id": "8c1e",
                    "pod_ip": "10.244.1.5",
                    "container_name": "nginx",
                    "container_image": "nginx:1.25",
                    "host": "node-1",
                    "labels": {"app": "web", "app_kubernetes_io/name": "web"},
                },
            }
        ]

        actual = decode(encode_documents(batch(["GET /healthz 200"]), "fluentd"))

        assert expected == actual

    def test_flags_and_fields_are_written_in_fluentd_documents(self) -> None:
        """Flags (top-level `flags`, since `log` is the message) and parsed fields survive."""
        b = batch(["a"], flags={0: ("truncated",)}, fields={0: {"level": "warn"}})

        (doc,) = decode(encode_documents(b, "fluentd"))

        expected = (["truncated"], "warn", "a")
        assert expected == (doc["flags"], doc["level"], doc["log"])

    def test_empty_parsed_fields_still_give_valid_json(self) -> None:
        """A row with `{}` as parsed fields is still one JSON object in the fluentd layout."""
        (doc,) = decode(encode_documents(batch(["{}"], fields={0: {}}), "fluentd"))

        expected_log = "{}"
        assert expected_log == doc["log"]


class TestNdjson:
    def test_ndjson_is_one_document_per_line_with_a_final_newline(self) -> None:
        """`encode_ndjson` joins the documents with newlines and ends with one."""
        b = batch(["a\nb", "c"])
        expected = b"".join(d + b"\n" for d in encode_documents(b))

        actual = encode_ndjson(b)

        assert expected == actual
        expected_messages = ["a\nb", "c"]
        assert expected_messages == [json.loads(x)["message"] for x in actual.splitlines()]

    def test_empty_batch_encodes_to_nothing(self) -> None:
        """No events, no bytes."""
        expected_ndjson = b""
        assert expected_ndjson == encode_ndjson(batch([]))


class TestEventIds:
    """`encode_documents(..., event_ids=True)`: the documents with ECS ``event.id``, the
    shape `batch_to_records` gives (what the `kafka` sink sends as record values)."""

    @pytest.mark.parametrize("schema", ["ecs", "fluentd"])
    def test_documents_with_ids_are_the_records_of_the_batch(self, schema: Any) -> None:
        """Every document carries ``<id_prefix>-<hex offset>``; everything else is the
        plain document's, including flags and parsed fields."""
        b = batch(
            ["a", 'say "hi"', "c"],
            flags={1: ("truncated",)},
            fields={2: {"level": "info", "log": {"level": "warn"}}},
        )
        expected = batch_to_records(b, schema)

        actual = decode(encode_documents(b, schema, event_ids=True))

        assert expected == actual
        expected_ids = ["p-3039", "p-309d", "p-3101"]
        assert expected_ids == [d["event"]["id"] for d in actual]

    @pytest.mark.parametrize("schema", ["ecs", "fluentd"])
    def test_a_parsed_event_field_is_kept_beside_the_id(self, schema: Any) -> None:
        """A parsed ``event`` object gets the ``id`` member (one ``event`` key, valid for
        Elasticsearch); a parsed ``event`` that is not an object moves to
        ``event_parsed``; a null one is dropped - as `batch_to_records` does."""
        b = batch(
            ["obj", "str", "null", "plain"],
            fields={
                0: {"event": {"kind": "audit", "id": "theirs"}, "user": "u"},
                1: {"event": "login"},
                2: {"event": None},
            },
        )
        expected = batch_to_records(b, schema)

        docs = encode_documents(b, schema, event_ids=True)

        assert expected == decode(docs)
        assert all(d.count(b'"event":') == 1 for d in docs)
        expected_first = {"kind": "audit", "id": "p-3039"}
        assert expected_first == json.loads(docs[0])["event"]

    def test_prefix_with_json_and_format_characters_is_escaped(self) -> None:
        """An id prefix from a foreign sender (quotes, ``%``, backslashes, newlines) still
        gives valid JSON and the exact id."""
        b = batch(["x", "y"])
        prefix = 'we"ird%s\\pre\nfix%'
        b = b.derive(ctx=replace(b.ctx, id_prefix=prefix))

        actual = decode(encode_documents(b, event_ids=True))

        expected_ids = [f"{prefix}-3039", f"{prefix}-309d"]
        assert expected_ids == [d["event"]["id"] for d in actual]

    def test_without_ids_the_documents_are_the_ndjson_lines(self) -> None:
        """The default documents are exactly the lines of `encode_ndjson`."""
        b = batch(["a", "b"], fields={1: {"k": 1}}, flags={0: ("malformed",)})
        expected = encode_ndjson(b).splitlines()

        actual = encode_documents(b)

        assert expected == actual


class TestFormatTimestamp:
    @pytest.mark.parametrize(
        ("dt", "nanos", "expected"),
        [
            (
                datetime(2021, 2, 15, 10, 0, 0, tzinfo=UTC),
                123_456_789,
                "2021-02-15T10:00:00.123456789Z",
            ),
            (datetime(2021, 2, 15, 10, 0, 0, tzinfo=UTC), 5, "2021-02-15T10:00:00.000000005Z"),
            (datetime(1970, 1, 1, tzinfo=UTC), 0, "1970-01-01T00:00:00.000000000Z"),
            (
                datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC),
                999_999_999,
                "2038-01-19T03:14:08.999999999Z",
            ),
            (
                datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC),
                1_000,
                "2024-02-29T23:59:59.000001000Z",
            ),
        ],
    )
    def test_timestamp_is_rfc3339_utc_with_nine_fraction_digits(
        self, dt: datetime, nanos: int, expected: str
    ) -> None:
        """Nanoseconds since the epoch print as `YYYY-mm-ddTHH:MM:SS.nnnnnnnnnZ`."""
        ns = (dt - EPOCH) // timedelta(seconds=1) * 1_000_000_000 + nanos

        actual = format_timestamp(ns)

        assert expected == actual
