"""`redact` scans every string of an event by default: the message, parsed fields
(nested objects and lists), and what the file shares (Kubernetes metadata); `fields`
narrows it. A secrets filter placed after a `parse` step must not let a parsed copy of
a secret through - the JSON text of a message can even hide one from a scan of the
message (``https:\\/\\/user:pw@host``, ``bob\\u0040example.com``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

import kubelogs.components  # noqa: F401
from kubelogs.codecs.document import encode_documents
from kubelogs.config.base import BuildContext
from kubelogs.kubernetes.document_meta import PodMeta, encode_meta
from kubelogs.parsing import build_parser
from kubelogs.pipeline.event import Batch, FileContext
from kubelogs.telemetry.metrics import Metrics
from kubelogs.transforms.redact import RedactConfig, RedactTransform

SECRET_ANNOTATION = "https://deploy:hunter2@git.example.com/app"
ECS, FLUENTD = encode_meta(
    namespace="payments",
    pod="api-1",
    pod_uid="u",
    container="app",
    container_id="",
    node="n1",
    pod_meta=PodMeta(
        name="api-1",
        namespace="payments",
        uid="u",
        labels={"app": "api"},
        annotations={"example.com/source": SECRET_ANNOTATION},
    ),
    include_annotations=True,
)
CTX = FileContext(
    source_id="s",
    path="/var/log/pods/p/app/0.log",
    file_key="k",
    id_prefix="x",
    meta_ecs=ECS,
    meta_fluentd=FLUENTD,
)
LINES = [
    '{"msg":"login","user":{"email":"bob\\u0040example.com","name":"bob"}}',
    '{"msg":"clone","url":"https:\\/\\/bob:pw123@db.example.com\\/x","n":4111111111111111}',
    '{"msg":"auth","headers":["Accept: */*","Authorization: Bearer abcdefgh12345678"]}',
    '{"msg":"nothing secret","level":"info"}',
    "plain line from alice@example.org",
]
SECRETS = ["bob@example.com", "pw123", "abcdefgh12345678", "alice@example.org", "hunter2"]


def parsed() -> Batch:
    n = len(LINES)
    batch = Batch(
        ctx=CTX,
        times=[0] * n,
        messages=list(LINES),
        streams=["stdout"] * n,
        offsets=list(range(n)),
    )
    return build_parser("json")(batch)


def build(**settings: Any) -> RedactTransform:
    cfg = RedactConfig.model_validate(
        {"type": "redact", "inputs": ["p"], "replacement": "[R]", **settings}
    )
    return cfg.build(BuildContext("red", Path("/tmp"), "n", Metrics()))


def docs(b: Batch, schema: str = "ecs") -> list[dict[str, Any]]:
    return [msgspec.json.decode(d) for d in encode_documents(b, schema)]  # type: ignore[arg-type]


def test_by_default_no_secret_is_left_anywhere_in_the_documents() -> None:
    src = parsed()
    before = [msgspec.json.encode(d) for d in docs(src)]
    assert all(any(s.encode() in d for d in before) or s == "hunter2" for s in SECRETS)

    out = build().process(src)
    assert out is not None

    for schema in ("ecs", "fluentd"):
        text = b"\n".join(encode_documents(out, schema))  # type: ignore[arg-type]
        assert [] == [s for s in SECRETS if s.encode() in text], schema
    d = docs(out)
    assert d[0]["user"] == {"email": "[R]", "name": "bob"}
    assert d[1]["url"] == "https://bob:[R]@db.example.com/x"
    assert d[1]["n"] == 4111111111111111  # numbers are not strings: left as they are
    assert d[2]["headers"] == ["Accept: */*", "Authorization: Bearer [R]"]
    assert d[4]["message"] == "plain line from [R]"
    assert d[0]["kubernetes"]["annotations"]["example_com/source"] == (
        "https://deploy:[R]@git.example.com/app"
    )
    assert d[0]["kubernetes"]["labels"] == {"app": "api"}
    assert d[0]["message"] == LINES[0]  # the JSON text hid the email from the message scan


def test_rows_without_secrets_keep_their_dicts_and_the_input_is_untouched() -> None:
    src = parsed()
    assert src.fields is not None
    original = msgspec.json.encode(src.fields)

    out = build().process(src)

    assert out is not None
    assert out.fields is not None
    assert out.fields[3] is src.fields[3]
    assert out.fields[0] is not src.fields[0]
    assert original == msgspec.json.encode(src.fields)
    assert src.ctx is CTX
    assert out.ctx is not CTX
    again = build().process(parsed())
    assert again is not None


def test_file_metadata_is_masked_once_per_file() -> None:
    metrics = Metrics()
    cfg = RedactConfig.model_validate({"type": "redact", "inputs": ["p"], "fields": None})
    t = cfg.build(BuildContext("red", Path("/tmp"), "n", metrics))
    first = t.process(parsed())
    second = t.process(parsed())

    assert first is not None
    assert second is not None
    assert first.ctx is second.ctx  # derived once, cached
    sample = metrics.registry.get_sample_value(
        "kubelogs_redactions_total", {"component_id": "red", "pattern": "basic_auth_url"}
    )
    assert sample == 1 + 2  # the annotation once, the parsed url in each batch


def test_fields_narrow_the_scan_and_an_empty_list_scans_the_message_only() -> None:
    listed = build(fields=["url"]).process(parsed())
    message_only = build(fields=[]).process(parsed())

    assert listed is not None
    assert message_only is not None
    d = docs(listed)
    assert d[1]["url"] == "https://bob:[R]@db.example.com/x"
    assert d[0]["user"]["email"] == "bob@example.com"  # not listed
    assert d[4]["message"] == "plain line from [R]"
    m = docs(message_only)
    assert m[1]["url"] == "https://bob:pw123@db.example.com/x"
    assert m[4]["message"] == "plain line from [R]"
    assert SECRET_ANNOTATION == m[0]["kubernetes"]["annotations"]["example_com/source"]


def test_listed_metadata_fields_are_masked_in_both_layouts() -> None:
    out = build(fields=["kubernetes.annotations.example_com/source"], message=False).process(
        parsed()
    )

    assert out is not None
    ecs, fluentd = docs(out)[0], docs(out, "fluentd")[0]
    masked = "https://deploy:[R]@git.example.com/app"
    assert masked == ecs["kubernetes"]["annotations"]["example_com/source"]
    assert masked == fluentd["kubernetes"]["annotations"]["example_com/source"]
    assert "plain line from alice@example.org" == docs(out)[4]["message"]


FRAGMENTS = [
    "Bearer abcdefgh12345678",
    "https://u:p4ss@h.example",
    "AKIAIOSFODNN7EXAMPLE",
    "eyJhbGciOi.eyJzdWIiOi.c2ln",
    "bob@example.com",
    "4111 1111 1111 1111",
    "5500-0000-0000-0004",
    "aws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    '"quoted"',
    "back\\slash",
    "line\nbreak",
    "tab\there",
    "İstanbul",
    "\u00e9t\u00e9 \u2028",
    "plain",
    "",
]


def _values() -> Any:
    from hypothesis import strategies as st

    text = st.lists(st.sampled_from(FRAGMENTS), max_size=3).map(" ".join)
    leaf = text | st.integers() | st.none() | st.booleans()
    return st.recursive(
        leaf,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
        max_leaves=8,
    )


def test_the_json_prefilter_finds_what_scanning_every_string_finds() -> None:
    """Rows are picked by scanning their fields encoded as JSON: escaping (quotes,
    backslashes, newlines, non-ASCII) must never hide a secret from that scan."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from kubelogs.transforms.redact import BUILTIN

    rows = st.dictionaries(st.integers(0, 20), st.dictionaries(st.text(max_size=3), _values()))

    @given(rows)
    @settings(max_examples=100, deadline=None)
    def check(fields: dict[int, dict[str, Any]]) -> None:
        fast = RedactTransform(list(BUILTIN.values()), lambda _: "[R]")
        slow = RedactTransform(list(BUILTIN.values()), lambda _: "[R]")
        slow._prefilter = False  # walk every row
        assert fast._prefilter
        expected = slow._redact_every_string(fields)
        assert fast._redact_every_string(fields) == expected

    check()


def test_an_anchored_user_pattern_matches_in_every_line_and_field() -> None:
    """Candidates are found in a batch's texts joined by newlines: ``^`` and ``$``
    must hold at each text's start and end, not only the first one's."""
    out = build(patterns=[], custom={"pw": "^password=(\\S+)$"}).process(
        Batch(
            ctx=CTX,
            times=[0, 0, 0],
            messages=["first", "password=hunter2", "not password=x here"],
            streams=["stdout"] * 3,
            offsets=[0, 1, 2],
            fields={0: {"a": "x", "b": "password=s3cret"}},
        )
    )

    assert out is not None
    assert ["first", "password=[R]", "not password=x here"] == out.messages
    assert out.fields == {0: {"a": "x", "b": "password=[R]"}}
