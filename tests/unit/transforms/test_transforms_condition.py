"""`transforms.condition` means what `kubelogs search` means: property test against the
store's exact matcher on the rendered documents, plus the parts decided per file."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubelogs.codecs.document import encode_documents
from kubelogs.kubernetes.document_meta import PodMeta, encode_meta
from kubelogs.pipeline.event import Batch, FileContext
from kubelogs.store.aliases import resolve_aliases
from kubelogs.store.matcher import compile_matcher
from kubelogs.store.query_parser import parse_query
from kubelogs.transforms.condition import Condition, ConditionError

WORDS = [
    "error",
    "Error",
    "GET",
    "/healthz",
    "200",
    "500",
    "timeout",
    "payments",
    "a-b",
    "ü",
    "errorerr",
    "xab",
    "ab_b",
    "x-a-b",
]
TERMS = [
    "error",
    '"GET /healthz"',
    "err*",
    "time*t",
    "e*r*r",
    "*a*b",
    "t*m*o*t",
    "x-a-b",
    '"-"',
    "message:timeout",
    "message:*",
    "kubernetes.namespace:default",
    "kubernetes.namespace:pay*",
    "kubernetes.labels.app:web",
    "kubernetes.labels:*",
    "kubernetes.pod.name:*",
    "host.name:node-1",
    "log.file.path:*",
    "log.file.path:/var/log/*",
    "stream:stderr",
    "stream:*",
    "stream >= stdout",
    "log.flags:truncated",
    "log.flags:*",
    "log:*",
    "log.offset >= 40",
    "log.offset:0",
    "level:error",
    "log.level:error",
    "status >= 500",
    "status:200",
    "ok:true",
    "foo:*",
    "kubernetes.namespace.x:*",
    "message.x:*",
    "@timestamp >= 2025-01-15T10:00:01Z",
    "@timestamp < 2025-01-15T10:00:02Z",
    "@timestamp:*",
    "@timestamp:2025-01-15T10:00:00Z",
    "*",
]


def _query() -> st.SearchStrategy[str]:
    leaf = st.sampled_from(TERMS)

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, inner).map(lambda ab: f"({ab[0]} and {ab[1]})"),
            st.tuples(inner, inner).map(lambda ab: f"({ab[0]} or {ab[1]})"),
            st.tuples(inner, inner).map(lambda ab: f"{ab[0]} {ab[1]}"),
            inner.map(lambda a: f"not {a}"),
        )

    return st.recursive(leaf, extend, max_leaves=5)


JSON_VALUES = st.one_of(
    st.sampled_from(["error", "info", "200", "x"]),
    st.integers(-5, 600),
    st.booleans(),
    st.none(),
    st.lists(st.sampled_from(["error", "info"]), max_size=2),
)
FIELD_KEYS = st.sampled_from(
    [
        "level",
        "log.level",
        "status",
        "ok",
        "foo",
        "kubernetes",
        "host",
        "message",
        "kubernetes.namespace",
        "kubernetes.labels.app",
        "host.name",
        "stream",
        "log.offset",
        "log.flags",
        "log",
        "@timestamp",
    ]
)


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    pod = draw(st.sampled_from(["", "web-1"]))
    namespace = draw(st.sampled_from(["default", "payments", "kube-system"])) if pod else ""
    labels = draw(st.sampled_from([{}, {"app": "web"}, {"app": "db", "app.kubernetes.io/x": "y"}]))
    meta = PodMeta(name=pod, namespace=namespace, uid="u1", labels=labels) if pod else None
    ecs, fluentd = encode_meta(
        namespace=namespace,
        pod=pod,
        pod_uid="u1" if pod else "",
        container="c",
        container_id="",
        node=draw(st.sampled_from(["node-1", "node-2"])),
        pod_meta=meta,
    )
    path = draw(st.sampled_from(["/var/log/pods/x/c/0.log", "/tmp/app.log"]))
    ctx = FileContext(
        source_id="s", path=path, file_key="k", id_prefix="p", meta_ecs=ecs, meta_fluentd=fluentd
    )
    n = draw(st.integers(1, 8))
    messages = [" ".join(draw(st.lists(st.sampled_from(WORDS), max_size=4))) for _ in range(n)]
    streams = [draw(st.sampled_from(["stdout", "stderr", ""])) for _ in range(n)]
    base = 1_736_935_200_000_000_000  # 2025-01-15T10:00:00Z
    times = [base + draw(st.integers(0, 3)) * 500_000_000 for _ in range(n)]
    offsets = [20 * i for i in range(n)]
    flags = {
        i: tuple(draw(st.lists(st.sampled_from(["truncated", "partial"]), min_size=1, max_size=2)))
        for i in draw(st.sets(st.integers(0, n - 1), max_size=2))
    }
    fields = {
        i: draw(st.dictionaries(FIELD_KEYS, JSON_VALUES, max_size=3))
        for i in draw(st.sets(st.integers(0, n - 1), max_size=3))
    }
    return Batch(
        ctx=ctx,
        times=times,
        messages=messages,
        streams=streams,
        offsets=offsets,
        flags=flags or None,
        fields=fields or None,
    )


def expected(query: str, batch: Batch) -> list[bool]:
    """What `kubelogs search` answers: the store's reader resolves aliases (`level`)
    before it matches documents, so the oracle does too."""
    matcher = compile_matcher(resolve_aliases(parse_query(query), "ecs"), "message")
    docs = encode_documents(batch, "ecs")
    return [matcher(msgspec.json.decode(d), t) for d, t in zip(docs, batch.times, strict=True)]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=_query(), batch=batches())
def test_condition_equals_the_store_matcher_on_rendered_documents(query: str, batch: Batch) -> None:
    assert Condition(query).matches(batch) == expected(query, batch)


def test_file_fields_are_decided_once_per_context() -> None:
    ecs, _ = encode_meta(
        namespace="payments", pod="web-1", pod_uid="u", container="c", container_id="", node="n"
    )
    ctx = FileContext(source_id="s", path="/p", file_key="k", id_prefix="x", meta_ecs=ecs)
    cond = Condition("kubernetes.namespace:payments and error")
    residual = cond.residual(ctx)
    assert repr(residual) == repr(parse_query("error"))
    other = FileContext(source_id="s", path="/q", file_key="k2", id_prefix="y", meta_ecs=b"")
    assert cond.residual(other) is False


def test_rows_with_parsed_fields_are_matched_as_documents() -> None:
    ctx = FileContext(source_id="s", path="/p", file_key="k", id_prefix="x")
    batch = Batch(
        ctx=ctx,
        times=[0, 0, 0],
        messages=["a", "b", "c"],
        streams=["stdout"] * 3,
        offsets=[0, 2, 4],
        fields={1: {"level": "error"}, 2: {"status": 503}},
        flags={0: ("truncated",)},
    )
    assert Condition("level:error").select(batch) == [1]
    assert Condition("status >= 500").select(batch) == [2]
    assert Condition("log.flags:truncated").select(batch) == [0]
    assert Condition("not level:error").select(batch) == [0, 2]


@pytest.mark.parametrize(
    ("text", "column"),
    [("a and (b", 9), ('level:"x', 7), ("x >=", 5)],
)
def test_syntax_errors_carry_a_caret(text: str, column: int) -> None:
    with pytest.raises(ConditionError) as info:
        Condition(text)
    assert f"column {column}" in str(info.value)
    lines = info.value.detail.splitlines()
    assert lines[0] == text
    assert lines[1] == " " * (column - 1) + "^"


def test_a_bad_time_is_refused() -> None:
    with pytest.raises(ConditionError, match="not an RFC 3339 time"):
        Condition("@timestamp >= yesterday")


def _unused(_: Any) -> None:
    return None


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ("kubernetes.namespace:other", {"kubernetes.namespace": "other"}),
        ("not kubernetes.namespace:payments", {"kubernetes.namespace": "other"}),
        ("log.offset:7", {"log.offset": 7}),
        ("host.name:n1", {"host.name": "elsewhere"}),
        ("kubernetes.labels.app:web", {"kubernetes": {"labels": {"app": "web"}}}),
        ("message:hello", {"message": "bye"}),
        ("stream:stdout", {"stream": "stderr"}),
    ],
)
def test_parsed_fields_that_look_like_file_fields(query: str, fields: dict[str, Any]) -> None:
    """A parsed field named like a file field or a column: the document decides (a
    literal dotted key wins over the object path; reserved names are renamed)."""
    ecs, _ = encode_meta(
        namespace="payments", pod="web-1", pod_uid="u", container="c", container_id="", node="n1"
    )
    ctx = FileContext(source_id="s", path="/p", file_key="k", id_prefix="x", meta_ecs=ecs)
    batch = Batch(
        ctx=ctx,
        times=[0, 0],
        messages=["hello", "hello"],
        streams=["stdout", "stdout"],
        offsets=[7, 9],
        fields={1: fields},
    )
    assert Condition(query).matches(batch) == expected(query, batch)


def test_wildcards_with_several_parts_take_linear_time() -> None:
    """The store's regex for ``a*b*c`` backtracks quadratically on a long word; the
    condition decides such terms word by word."""
    import time

    ctx = FileContext(source_id="s", path="/p", file_key="k", id_prefix="x")
    hostile = "a" + "b" * 300_000 + " end"
    batch = Batch(
        ctx=ctx, times=[0, 0], messages=[hostile, "x abxc y"], streams=["", ""], offsets=[0, 1]
    )
    start = time.process_time()
    assert Condition("a*b*c").select(batch) == [1]
    assert time.process_time() - start < 2.0


def test_level_alias_on_a_literal_dotted_key_agrees_with_search() -> None:
    """Found by the property test in CI: `modify set: log.level` writes a literal dotted
    key; `level:error` matches it in conditions as `kubelogs search` does."""
    ctx = FileContext(source_id="s", path="/p", file_key="k", id_prefix="x")
    batch = Batch(
        ctx=ctx,
        times=[0, 0],
        messages=["a", "b"],
        streams=["stdout", "stdout"],
        offsets=[0, 2],
        fields={0: {"log.level": "error"}},
    )

    assert [True, False] == Condition("level:error").matches(batch)
    assert [True, False] == expected("level:error", batch)
