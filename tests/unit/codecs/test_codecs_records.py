"""Batches -> records -> batches keeps what a receiving store and Elasticsearch need:
the same documents, the same event ids, one file key per sender file."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubelogs.codecs.document import Schema, encode_documents
from kubelogs.codecs.records import (
    RecordDecoder,
    batch_to_records,
    decode_kubelogs_document,
    file_key_for_prefix,
    split_event_id,
)
from kubelogs.kubernetes.document_meta import ContainerMeta, PodMeta
from kubelogs.pipeline.event import Batch, make_id_prefix
from kubelogs.sources.tail_options import file_context


def _ctx(*, pod: bool = True, rich: bool = False, key: str = "8:12:abc") -> Any:
    prefix = make_id_prefix("node-1", key)
    if not pod:
        return file_context(
            source_id="node", node="node-1", path="/var/log/kubelet.log", key=key, id_prefix=prefix
        )
    ctx = file_context(
        source_id="containers",
        node="node-1",
        path="/var/log/pods/default_web-1_u1/nginx/0.log",
        key=key,
        id_prefix=prefix,
        namespace="default",
        pod="web-1",
        pod_uid="u1",
        container="nginx",
        container_id="containerd://3f2a",
    )
    if rich:
        from kubelogs.kubernetes.document_meta import encode_meta

        meta = PodMeta(
            name="web-1",
            namespace="default",
            uid="u1",
            ip="10.0.0.5",
            node="node-1",
            labels={"app": "web", "app.kubernetes.io/name": "web"},
            annotations={"team": "a"},
            namespace_labels={"env": "prod"},
            owners={"deployment": "web", "replicaset": "web-7d"},
            containers={
                "nginx": ContainerMeta(image="nginx:1.25", container_id="containerd://3f2a")
            },
        )
        ecs, fluentd = encode_meta(
            namespace="default",
            pod="web-1",
            pod_uid="u1",
            container="nginx",
            container_id="containerd://3f2a",
            node="node-1",
            pod_meta=meta,
            include_annotations=True,
        )
        ctx = ctx.with_meta(meta_ecs=ecs, meta_fluentd=fluentd)
    return ctx


def _batch(ctx: Any, n: int = 4) -> Batch:
    return Batch(
        ctx=ctx,
        times=[1_700_000_000_123_456_789 + i for i in range(n)],
        messages=[f"line {i} é" for i in range(n)],
        streams=["stdout" if i % 2 else "stderr" for i in range(n)],
        offsets=[100 * i for i in range(n)],
        flags={1: ("partial",)},
        fields={2: {"http": {"response": {"status_code": 503}}, "user": "ann"}},
        end_offset=100 * n,
    )


def _roundtrip(batch: Batch, schema: Schema) -> list[Batch]:
    records = [(None, r) for r in batch_to_records(batch, schema)]
    # Records cross the wire as JSON or msgpack: only plain data survives.
    wire = msgspec.json.decode(msgspec.json.encode(records))
    return RecordDecoder("fwd", "aggregator-0").decode([(t, r) for t, r in wire], origin="unused")


@pytest.mark.parametrize("schema", ["ecs", "fluentd"])
@pytest.mark.parametrize(("pod", "rich"), [(True, False), (True, True), (False, False)])
def test_documents_and_ids_survive_the_hop(schema: Schema, pod: bool, rich: bool) -> None:
    original = _batch(_ctx(pod=pod, rich=rich))

    (back,) = _roundtrip(original, schema)

    assert encode_documents(back, schema) == encode_documents(original, schema)
    assert [back.event_id(i) for i in range(len(back))] == [
        original.event_id(i) for i in range(len(original))
    ]
    assert back.ctx.file_key == file_key_for_prefix(original.ctx.id_prefix)


def test_records_carry_the_event_id_in_ecs_event() -> None:
    b = _batch(_ctx())

    records = batch_to_records(b)

    assert [r["event"]["id"] for r in records] == [b.event_id(i) for i in range(len(b))]
    assert split_event_id(records[3]["event"]["id"]) == (b.ctx.id_prefix, 300)


def test_two_sender_files_become_two_batches_with_their_own_keys() -> None:
    a, b = _batch(_ctx(key="1:1:a")), _batch(_ctx(key="1:2:b"))
    records = [(None, r) for r in batch_to_records(a) + batch_to_records(b)]

    out = RecordDecoder("fwd", "agg").decode(records, origin="x")

    assert [len(x) for x in out] == [4, 4]
    assert out[0].ctx.file_key != out[1].ctx.file_key
    assert out[0].ctx.id_prefix == a.ctx.id_prefix


def test_rows_are_sorted_by_offset_within_a_batch() -> None:
    recs = batch_to_records(_batch(_ctx()))
    shuffled = [recs[2], recs[0], recs[3], recs[1]]

    (back,) = RecordDecoder("fwd", "agg").decode([(None, r) for r in shuffled], origin="x")

    assert back.offsets == [0, 100, 200, 300]
    assert back.flags == {1: ("partial",)}
    assert back.messages[2] == "line 2 é"
    assert back.fields is not None
    assert back.fields[2]["user"] == "ann"


def test_foreign_records_keep_their_fields_and_get_unique_ids() -> None:
    dec = RecordDecoder("fwd", "agg")
    records = [
        (1_000, {"message": "hello", "level": "info", "user": {"id": 7}}),
        (2_000, {"log": "fluent-bit style\n", "stream": "stdout"}),
        (None, {"msg": "zap style", "@timestamp": "2024-01-01T00:00:00Z"}),
        (3_000, {"no_message": True}),
    ]

    (b,) = dec.decode(records, origin="app.web")
    (b2,) = dec.decode(records[:1], origin="app.web")

    assert b.messages == ["hello", "fluent-bit style\n", "zap style", ""]
    assert b.times[:2] == [1_000, 2_000]
    assert b.times[2] == 1_704_067_200_000_000_000
    assert b.streams[1] == "stdout"
    assert b.fields == {0: {"level": "info", "user": {"id": 7}}, 3: {"no_message": True}}
    assert b.ctx.file_key == ""
    ids = [b.event_id(i) for i in range(len(b))] + [b2.event_id(0)]
    assert len(set(ids)) == len(ids)


def test_foreign_origins_are_separate_batches() -> None:
    out = RecordDecoder("fwd", "agg").decode([(1, {"message": "a"})], origin="t1")
    out += RecordDecoder("fwd", "agg").decode([(1, {"message": "b"})], origin="t2")

    assert out[0].ctx.id_prefix != out[1].ctx.id_prefix


@pytest.mark.parametrize(
    "text", [None, 3, "", "nodash", "-1f", "abc-", "abc-xyz", "abc-" + "f" * 17]
)
def test_split_event_id_refuses_what_is_not_an_id(text: object) -> None:
    assert split_event_id(text) is None


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.none() | st.integers(0, 2**62),
            st.dictionaries(st.text(max_size=10), _json, max_size=6),
        ),
        max_size=8,
    )
)
def test_any_record_decodes_without_error(records: list[tuple[int | None, dict[str, Any]]]) -> None:
    out = RecordDecoder("fwd", "agg").decode(records, origin="o")

    assert sum(len(b) for b in out) == len(records)
    for b in out:
        encode_documents(b)  # every decoded batch renders


def test_an_event_received_twice_in_one_read_is_kept_once() -> None:
    """A sender that restarted resends what was not acknowledged; a Kafka poll can hold
    the original and the resend together. The store drops resends only between writes,
    so the decoder keeps the first copy of each event id."""
    recs = batch_to_records(_batch(_ctx()))
    twice = [recs[0], recs[1], recs[2], recs[1], recs[2], recs[3]]

    (back,) = RecordDecoder("fwd", "agg").decode([(None, r) for r in twice], origin="x")

    assert back.offsets == [0, 100, 200, 300]
    assert back.messages == ["line 0 é", "line 1 é", "line 2 é", "line 3 é"]
    assert back.flags == {1: ("partial",)}


def _typed_and_mapped(values: list[bytes]) -> tuple[list[Batch], list[Batch], int]:
    """`values` decoded both ways: typed where `decode_kubelogs_document` takes them (the
    count), as maps for every one."""
    typed: list[tuple[int | None, Any]] = []
    n_typed = 0
    for v in values:
        doc = decode_kubelogs_document(v)
        n_typed += doc is not None
        typed.append((None, doc if doc is not None else msgspec.json.decode(v)))
    mapped = [(None, msgspec.json.decode(v)) for v in values]
    return (
        RecordDecoder("kafka", "agg").decode(typed, origin="t"),
        RecordDecoder("kafka", "agg").decode(mapped, origin="t"),
        n_typed,
    )


def _same(a: list[Batch], b: list[Batch]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.ctx == y.ctx
        assert (x.times, x.messages, x.streams, x.offsets) == (
            y.times,
            y.messages,
            y.streams,
            y.offsets,
        )
        assert (x.flags, x.fields) == (y.flags, y.fields)


@pytest.mark.parametrize("rich", [False, True])
def test_typed_documents_give_the_batches_their_maps_give(rich: bool) -> None:
    """A plain kubelogs document (the `kafka` sink's value) decoded typed becomes the
    same batch as decoded as a map: context, columns, flags; files and metadata that
    change between records start new batches the same way."""
    plain = _batch(_ctx(rich=rich)).derive(fields=None)
    other_file = _batch(_ctx(key="1:2:b", rich=rich), 3).derive(fields=None)
    no_pod = _batch(_ctx(pod=False), 2).derive(fields=None)
    values = [
        v
        for b in (plain, other_file, no_pod, plain.derive(offsets=[900, 901, 902, 903]))
        for v in encode_documents(b, event_ids=True)
    ]

    typed, mapped, n_typed = _typed_and_mapped(values)

    assert len(values) == n_typed
    _same(typed, mapped)
    assert [4 + 4, 3, 2] == [len(b) for b in typed]
    assert encode_documents(typed[0])[:4] == encode_documents(plain)


def test_other_shapes_are_not_taken_as_typed_documents() -> None:
    """Parsed fields, the fluentd layout, a missing or foreign id, an id that is not
    ``<prefix>-<hex>`` or a value that is not JSON: the general path decodes them."""
    b = _batch(_ctx(), 3)
    with_fields = encode_documents(b, event_ids=True)[2]
    fluentd = encode_documents(b.derive(fields=None), "fluentd", event_ids=True)[0]
    without_id = encode_documents(b.derive(fields=None))[0]
    bad_id = encode_documents(b.derive(fields=None), event_ids=True)[0].replace(b'-0"}', b'-xyz"}')

    for v in (with_fields, fluentd, without_id, bad_id, b"not json", b"[1]"):
        assert decode_kubelogs_document(v) is None, v


def test_a_host_with_more_than_a_name_stays_a_field_when_typed() -> None:
    """What the map path keeps as fields (a ``host`` object with more than its name)
    the typed path keeps too, per row."""
    b = _batch(_ctx(), 2).derive(fields=None)
    values = [
        v.replace(b'"host":{"name":"node-1"}', b'"host":{"name":"node-1","ip":"10.0.0.1"}')
        for v in encode_documents(b, event_ids=True)
    ]

    typed, mapped, n_typed = _typed_and_mapped(values)

    assert 2 == n_typed
    _same(typed, mapped)
    assert {0: {"host": {"name": "node-1", "ip": "10.0.0.1"}}} == {
        k: v for k, v in (typed[0].fields or {}).items() if k == 0
    }


def test_typed_timestamps_in_any_rfc3339_form_are_the_maps() -> None:
    """The typed path looks up the seconds of the sink's own timestamp form and parses
    any other form (offsets, short fractions) the way the map path does."""
    b = _batch(_ctx(), 4).derive(fields=None)
    forms = [
        "2023-11-14T22:13:20.123456789Z",
        "2023-11-14T22:13:20.5+02:00",
        "2023-11-14T22:13:20Z",
        "2023-11-14T22:13:20.987654321Z",
    ]
    values = []
    for v, ts in zip(encode_documents(b, event_ids=True), forms, strict=True):
        doc = msgspec.json.decode(v)
        doc["@timestamp"] = ts
        values.append(msgspec.json.encode(doc))

    typed, mapped, n_typed = _typed_and_mapped(values)

    assert 4 == n_typed
    _same(typed, mapped)
    base = 1_699_999_999 * 1_000_000_000
    expected = [
        base + 1_000_000_000 + 123_456_789,
        base + 1_000_000_000 - 7200 * 1_000_000_000 + 500_000_000,
        base + 1_000_000_000,
        base + 1_000_000_000 + 987_654_321,
    ]
    assert expected == typed[0].times
