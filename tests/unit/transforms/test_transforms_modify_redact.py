"""`modify` and `redact`: per-row fields and message, per-file metadata, masking."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kubelogs.components  # noqa: F401
from kubelogs.codecs.document import encode_documents
from kubelogs.config.errors import ConfigInvalid
from kubelogs.config.loader import config_from_data
from kubelogs.kubernetes.document_meta import encode_meta
from kubelogs.pipeline.event import Batch, FileContext
from kubelogs.telemetry.metrics import Metrics
from kubelogs.transforms.modify import ModifyTransform
from kubelogs.transforms.redact import BUILTIN, RedactConfig, RedactTransform, luhn_ok

ECS, FLUENTD = encode_meta(
    namespace="payments", pod="api-1", pod_uid="u", container="app", container_id="", node="n1"
)
CTX = FileContext(
    source_id="s",
    path="/var/log/pods/p/app/0.log",
    file_key="k",
    id_prefix="x",
    meta_ecs=ECS,
    meta_fluentd=FLUENTD,
)


def batch(messages: list[str], fields: dict[int, dict[str, Any]] | None = None) -> Batch:
    n = len(messages)
    return Batch(
        ctx=CTX,
        times=[0] * n,
        messages=messages,
        streams=["stdout"] * n,
        offsets=list(range(n)),
        fields=fields,
    )


def docs(b: Batch, schema: str = "ecs") -> list[dict[str, Any]]:
    return [msgspec.json.decode(d) for d in encode_documents(b, schema)]  # type: ignore[arg-type]


class TestModify:
    def test_static_fields_go_into_the_file_context_once(self) -> None:
        m = ModifyTransform(static={"cluster.name": "prod-eu", "kubernetes.cluster": "eu1"})
        first = m.process(batch(["a", "b"]))
        second = m.process(batch(["c"]))
        assert first is not None
        assert second is not None
        assert first.ctx is second.ctx  # derived once per file, cached
        d = docs(first)[0]
        assert d["cluster"] == {"name": "prod-eu"}
        assert d["kubernetes"]["cluster"] == "eu1"
        assert d["kubernetes"]["namespace"] == "payments"
        assert docs(first, "fluentd")[0]["cluster"] == {"name": "prod-eu"}
        assert first.fields is None  # nothing per row

    def test_set_with_templates_copy_rename_remove(self) -> None:
        m = ModifyTransform(
            copy={"kubernetes.namespace": "tenant"},
            rename={"lvl": "level"},
            set={"service.name": "{kubernetes.pod.name}-{level}", "message": "[{level}] {message}"},
            remove=["secret", "kubernetes.labels"],
        )
        src = batch(["boom", "ok"], {0: {"lvl": "error", "secret": "s"}})
        out = m.process(src)
        assert out is not None
        assert out.messages == ["[error] boom", "[] ok"]
        assert out.fields == {
            0: {"tenant": "payments", "level": "error", "service": {"name": "api-1-error"}},
            1: {"tenant": "payments", "service": {"name": "api-1-"}},
        }
        assert src.fields == {0: {"lvl": "error", "secret": "s"}}  # the input is untouched

    def test_a_file_field_template_is_rendered_once_and_shared(self) -> None:
        m = ModifyTransform(set={"team": "{kubernetes.namespace}"}, remove=["a"])
        out = m.process(batch(["x", "y", "z"], {1: {"a": 1, "b": 2}}))
        assert out is not None
        assert out.fields is not None
        assert out.fields == {
            0: {"team": "payments"},
            1: {"b": 2, "team": "payments"},
            2: {"team": "payments"},
        }
        assert out.fields[0] is out.fields[2]

    def test_metadata_can_be_removed_and_set_from_file_fields(self) -> None:
        m = ModifyTransform(set={"kubernetes.team": "team-{kubernetes.namespace}"}, remove=["host"])
        out = m.process(batch(["x"]))
        assert out is not None
        d = docs(out)[0]
        assert d["kubernetes"]["team"] == "team-payments"
        assert "host" not in d

    def test_config_refuses_what_cannot_change(self) -> None:
        data = {
            "sources": {"node": {"type": "file", "paths": ["/var/log/x.log"]}},
            "transforms": {
                "m": {
                    "type": "modify",
                    "inputs": ["node"],
                    "set": {"stream": "x", "kubernetes.x": "{level}"},
                    "remove": ["message"],
                }
            },
            "sinks": {"out": {"type": "blackhole", "inputs": ["m"]}},
        }
        with pytest.raises(ConfigInvalid) as info:
            config_from_data(data, "t.yaml", {})
        (problem,) = info.value.problems
        assert problem.startswith("transforms.m: ")
        assert "set.stream: written by kubelogs itself" in problem
        assert "set.kubernetes.x: a metadata field is the same for every line" in problem
        assert "remove: 'message' is written by kubelogs itself" in problem


SECRETS = [
    ("Authorization: Bearer abcdef0123456789.xyz", "Authorization: Bearer [R]", "bearer_token"),
    (
        "GET https://bob:hunter2@db.example.com/x",
        "GET https://bob:[R]@db.example.com/x",
        "basic_auth_url",
    ),
    ("key AKIAIOSFODNN7EXAMPLE used", "key [R] used", "aws_access_key"),
    (
        "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_secret_access_key=[R]",
        "aws_secret_key",
    ),
    ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_abc-DEF ok", "token [R] ok", "jwt"),
    ("mail from alice.smith+x@mail.example.org today", "mail from [R] today", "email"),
    ("card 4111 1111 1111 1111 charged", "card [R] charged", "credit_card"),
    ("card 4111-1111-1111-1111", "card [R]", "credit_card"),
    ("amex 3782 822463 10005.", "amex [R].", "credit_card"),
    ("pan=4111111111111111", "pan=[R]", "credit_card"),
]


class TestRedact:
    @pytest.mark.parametrize(("text", "expected", "pattern"), SECRETS)
    def test_builtin_patterns(self, text: str, expected: str, pattern: str) -> None:
        r = RedactTransform(list(BUILTIN.values()), lambda _: "[R]")
        assert r.redact(text) == expected
        assert r.masked == {pattern: 1}

    @pytest.mark.parametrize(
        "text",
        [
            "order 4111111111111112 failed",  # Luhn fails
            "GET /api/v1/orders/2663429 200 598ms",  # numbers side by side
            "span_id 51578434237817d5",  # inside a hex id
            "id 9111111111111111 x",  # no card network starts with 9
            "id 1234567890123456789012 done",  # too long a run of digits
            "at 2025-01-15 10:00:00.123456789 took 12345 ms",
            "no secrets here, see https://example.com/path?a=b",
            "user@ alone and @host",
        ],
    )
    def test_ordinary_text_is_left_alone(self, text: str) -> None:
        r = RedactTransform(list(BUILTIN.values()), lambda _: "[R]")
        assert r.redact(text) is text

    def test_luhn(self) -> None:
        assert luhn_ok("4111111111111111")
        assert not luhn_ok("4111111111111112")

    def test_hash_mode_is_keyed_and_stable(self) -> None:
        cfg = RedactConfig.model_validate(
            {
                "type": "redact",
                "inputs": ["x"],
                "mode": "hash",
                "hash_key": "k1",
                "patterns": ["email"],
            }
        )
        from pathlib import Path

        from kubelogs.config.base import BuildContext

        metrics = Metrics()
        t = cfg.build(BuildContext("red", Path("/tmp"), "n", metrics))
        out = t.process(batch(["from a@b.example", "to a@b.example", "none"]))
        assert out is not None
        mark = out.messages[0].removeprefix("from ")
        assert mark.startswith("[HMAC:")
        assert len(mark) == 23
        assert out.messages[1] == f"to {mark}"
        assert out.messages[2] == "none"
        assert "k1" not in repr(cfg)
        value = metrics.registry.get_sample_value(
            "kubelogs_redactions_total", {"component_id": "red", "pattern": "email"}
        )
        assert value == 2

    def test_custom_patterns_and_fields(self) -> None:
        from kubelogs.transforms.redact import compile_custom

        r = RedactTransform(
            [compile_custom("ssn", r"ssn=(\d{3}-\d{2}-\d{4})")],
            lambda _: "[R]",
            fields=["user.note", "log.level"],
        )
        src = batch(["ssn=123-45-6789 ok"], {0: {"user": {"note": "my ssn=111-22-3333"}}})
        out = r.process(src)
        assert out is not None
        assert out.messages == ["ssn=[R] ok"]
        assert out.fields == {0: {"user": {"note": "my ssn=[R]"}}}
        assert src.fields == {0: {"user": {"note": "my ssn=111-22-3333"}}}

    def test_unchanged_batches_are_returned_as_they_are(self) -> None:
        b = batch(["nothing", "to see"])
        assert RedactTransform(list(BUILTIN.values()), lambda _: "[R]").process(b) is b

    def test_hostile_input_takes_linear_time(self) -> None:
        r = RedactTransform(list(BUILTIN.values()), lambda _: "[R]")
        hostile = [
            "a" * 200_000 + "@",
            "a://" * 50_000 + "b:c",
            "x:" * 100_000 + "@",
            ("4" * 15 + " ") * 10_000,
            "bearer " * 30_000,
            "eyJ" + "a" * 200_000 + ".",
            "a.b." * 50_000 + "@" + "c." * 50_000,
        ]
        for text in hostile:
            start = time.process_time()
            r.redact(text)
            assert time.process_time() - start < 2.0, text[:20]

    def test_config_errors(self) -> None:
        data = {
            "sources": {"node": {"type": "file", "paths": ["/var/log/x.log"]}},
            "transforms": {
                "r": {
                    "type": "redact",
                    "inputs": ["node"],
                    "patterns": ["emial"],
                    "custom": {"bad": "(a", "backref": r"(a)\1"},
                },
                "h": {"type": "redact", "inputs": ["r"], "mode": "hash"},
            },
            "sinks": {"out": {"type": "blackhole", "inputs": ["h"]}},
        }
        with pytest.raises(ConfigInvalid) as info:
            config_from_data(data, "t.yaml", {})
        problems = info.value.problems
        assert problems[0].startswith("transforms.r.patterns: unknown pattern 'emial'")
        assert problems[1].startswith("transforms.r.custom: custom.bad: not a valid RE2 regex")
        assert problems[2] == (
            "transforms.h: mode hash needs hash_key (for example hash_key: ${REDACT_KEY})"
        )


FRAGMENTS = [
    "Bearer abcdefgh12345678",
    "bearer  xyzXYZ0123456789",
    "https://u:p4ss@h.example",
    "AKIAIOSFODNN7EXAMPLE",
    "eyJhbGciOi.eyJzdWIiOi.c2ln",
    "bob@example.com",
    "4111 1111 1111 1111",
    "5500-0000-0000-0004",
    "4111111111111112",
    "İstanbul",  # lower() makes it two characters: offsets of the batch text shift
    "line\nbreak bob@example.com",
    "ß",
    "plain words",
    " ",
    "\u00e9t\u00e9",
    "aws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
]


@given(st.lists(st.lists(st.sampled_from(FRAGMENTS), max_size=4).map(" ".join), max_size=12))
@settings(max_examples=300, deadline=None)
def test_batch_scan_finds_what_line_by_line_matching_finds(texts: list[str]) -> None:
    """Candidate lines come from scans of the whole batch's text; masking every line
    with every pattern directly must give the same result."""
    from kubelogs.transforms.redact import compile_custom

    patterns = [*BUILTIN.values(), compile_custom("word", r"wo(rd)s")]
    r = RedactTransform(patterns, lambda _: "[R]")
    expected = []
    for text in texts:
        for p in patterns:
            text, _ = p.apply(text, lambda _: "[R]")
        expected.append(text)
    assert r.redact_all(texts) == expected
