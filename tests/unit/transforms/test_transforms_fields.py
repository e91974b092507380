"""`transforms.fields`: field values and templates read events as documents show them."""

from __future__ import annotations

import pytest

from kubelogs.kubernetes.document_meta import encode_meta
from kubelogs.pipeline.event import Batch, FileContext
from kubelogs.transforms.fields import FileFields, Template

ECS, _ = encode_meta(
    namespace="shop", pod="web-1", pod_uid="u", container="c", container_id="", node="n1"
)
CTX = FileContext(source_id="s", path="/p", file_key="k", id_prefix="x", meta_ecs=ECS)


def batch(fields: dict[int, dict[str, object]] | None = None) -> Batch:
    return Batch(
        ctx=CTX,
        times=[0, 0, 0],
        messages=["a", "b", "c"],
        streams=["stdout", "", "stderr"],
        offsets=[0, 2, 4],
        fields=fields,
    )


def test_values_by_document_names() -> None:
    v = FileFields()
    b = batch({0: {"log.level": "warn", "kubernetes": {"namespace": "fake"}, "x": {"y": 1}}})
    assert v.value(b, 0, "log.level") == "warn"  # a literal dotted key, as documents keep it
    assert v.value(b, 0, "kubernetes.namespace") == "shop"  # the parsed one is renamed
    assert v.value(b, 0, "x.y") == 1
    assert v.value(b, 1, "stream") is None  # plain files have no stream
    assert v.value(b, 2, "message") == "c"
    assert v.value(b, 0, "host.name") == "n1"


def test_template_of_file_fields_is_rendered_once_unless_shadowed() -> None:
    t = Template.parse("{kubernetes.namespace}/{kubernetes.pod.name}")
    assert t.per_file()
    rendered = t.render_batch(FileFields(), batch({1: {"kubernetes.namespace": "other"}}))
    assert rendered == ["shop/web-1", "other/web-1", "shop/web-1"]
    assert rendered[0] is rendered[2]


def test_template_literals_and_errors() -> None:
    assert Template.parse("{{literal}} {message}").render_batch(FileFields(), batch()) == [
        "{literal} a",
        "{literal} b",
        "{literal} c",
    ]
    with pytest.raises(ValueError, match="unbalanced brace"):
        Template.parse("{oops")
    assert not Template.parse("{stream}").per_file()
