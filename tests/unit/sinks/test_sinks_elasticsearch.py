"""The `elasticsearch` sink without a cluster: encoder, request builder, retry policy and
the run loop, driven through the transport seam (a scripted fake cluster)."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from kubelogs.buffer import dead_letter
from kubelogs.codecs.document import encode_documents
from kubelogs.pipeline.acks import AckToken
from kubelogs.pipeline.channels import Channel
from kubelogs.pipeline.event import Batch
from kubelogs.sinks.elasticsearch.config import ElasticsearchConfig
from kubelogs.sinks.elasticsearch.encoder import (
    IndexPattern,
    IndexResolver,
    encode_batch,
    sanitize_index,
)
from kubelogs.sinks.elasticsearch.health import (
    ServerInfo,
    detect_flavour,
    health_check,
    mappings,
)
from kubelogs.sinks.elasticsearch.request_builder import BatchTracker, BulkRequest, gzip_body
from kubelogs.sinks.elasticsearch.retry import (
    DeadLetter,
    Indexed,
    Retry,
    RetryableError,
    classify_item,
    classify_response,
)
from kubelogs.sinks.elasticsearch.service import HostPool, Response, TransportError
from kubelogs.sinks.elasticsearch.sink import ElasticsearchSink, HealthCheckError, _es_metrics
from kubelogs.telemetry.metrics import ComponentMetrics, Metrics
from support.store_docs import make_batches
from support.waiting import until

# -- a fake cluster behind the transport seam ------------------------------------------------

ItemPolicy = Callable[[str, dict[str, Any], int], int | tuple[int, str, str] | None]
"""(id, document, attempt number of this id) -> a status (or status, error type, reason)
to answer instead of the normal create; None = normal (201, or 409 if it exists)."""


class FakeCluster:
    def __init__(self, *, root_status: int = 200, flavour: str = "opensearch") -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.indices: dict[str, str] = {}
        self.bulk_bodies: list[list[str]] = []
        self.templates: dict[str, Any] = {}
        self.fail_requests: list[int | str] = []
        """Whole-request failures to give, in order: a status, or "refused"."""
        self.item_policy: ItemPolicy = lambda _id, _doc, _n: None
        self.attempts: dict[str, int] = {}
        self.root_status = root_status
        self.flavour = flavour
        self.health = "green"
        self.policies: dict[str, Any] = {}
        self.no_lifecycle = False

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        request_timeout: float | None = None,
    ) -> Response:
        await asyncio.sleep(0)
        hdr = {"X-elastic-product": "Elasticsearch"} if self.flavour != "opensearch" else {}
        if path == "/":
            if self.root_status != 200:
                return Response(self.root_status, hdr, b"{}", "fake")
            dist = {"distribution": "opensearch"} if self.flavour == "opensearch" else {}
            v = {"number": "2.19.1" if self.flavour == "opensearch" else "8.19.4", **dist}
            return Response(200, hdr, json.dumps({"version": v}).encode(), "fake")
        if path.startswith("/_cluster/health"):
            return Response(200, hdr, json.dumps({"status": self.health}).encode(), "fake")
        if path.startswith(("/_ilm/policy/", "/_plugins/_ism/policies/")):
            if self.no_lifecycle:
                return Response(400, hdr, b'{"error":"no handler found"}', "fake")
            assert body is not None
            self.policies[path] = json.loads(body)
            return Response(200, hdr, b'{"acknowledged":true}', "fake")
        if path.startswith("/_index_template/"):
            assert body is not None
            self.templates[path.rsplit("/", 1)[1]] = json.loads(body)
            return Response(200, hdr, b'{"acknowledged":true}', "fake")
        assert path.startswith("/_bulk"), path
        if self.fail_requests:
            failure = self.fail_requests.pop(0)
            if failure == "refused":
                raise TransportError("fake: unreachable: refused", kind="unreachable")
            assert isinstance(failure, int)
            return Response(failure, hdr, b'{"error":"busy"}', "fake")
        assert body is not None
        if (headers or {}).get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        lines = body.decode().splitlines()
        self.bulk_bodies.append(lines)
        items = []
        for action_line, doc_line in zip(lines[::2], lines[1::2], strict=True):
            action = json.loads(action_line)["create"]
            doc = json.loads(doc_line)
            _id = action["_id"]
            self.attempts[_id] = self.attempts.get(_id, 0) + 1
            answer = self.item_policy(_id, doc, self.attempts[_id])
            if answer is not None:
                status, etype, reason = (
                    answer if isinstance(answer, tuple) else (answer, "x_exception", "no")
                )
                items.append(
                    {"create": {"status": status, "error": {"type": etype, "reason": reason}}}
                )
            elif _id in self.docs:
                items.append({"create": {"status": 409, "error": {"type": "version_conflict"}}})
            else:
                self.docs[_id] = doc
                self.indices[_id] = action["_index"]
                items.append({"create": {"status": 201}})
        return Response(200, hdr, json.dumps({"errors": True, "items": items}).encode(), "fake")

    async def close(self) -> None:
        return None


def make_sink(
    tmp_path: Path, cluster: FakeCluster, **config: Any
) -> tuple[ElasticsearchSink, Metrics]:
    base: dict[str, Any] = {
        "type": "elasticsearch",
        "inputs": ["x"],
        "hosts": ["http://es:9200"],
        "retry": {"initial_backoff": "10ms", "max_backoff": "50ms"},
        "bulk": {"flush_interval": "20ms", "max_events": 100},
    }
    base.update(config)
    cfg = ElasticsearchConfig.model_validate(base)
    metrics = Metrics()
    sink = ElasticsearchSink(
        cfg,
        transport=cluster,
        metrics=ComponentMetrics(metrics, "es", "sink", "elasticsearch"),
        es_metrics=_es_metrics(metrics),
        component_id="es",
        dead_letter_dir=tmp_path / "dlq",
    )
    return sink, metrics


class Feed:
    """A channel into the sink and the acks that came back."""

    def __init__(self, sink: ElasticsearchSink) -> None:
        self.channel = Channel("es", capacity=1000)
        self.channel.add_producer()
        self.acked: list[int] = []
        self.task = asyncio.create_task(sink.run(self.channel))

    async def send(self, batches: list[Batch]) -> None:
        for i, b in enumerate(batches):
            await self.channel.put(b.derive(ack=AckToken(lambda i=i: self.acked.append(i))))

    async def finish(self) -> None:
        self.channel.close_producer()
        await asyncio.wait_for(self.task, 20)


def all_ids(batches: list[Batch]) -> list[str]:
    return [b.event_id(i) for b in batches for i in range(len(b))]


# -- encoder ---------------------------------------------------------------------------------


def test_actions_carry_the_event_id_and_the_index_of_the_event_day_in_utc() -> None:
    batch = make_batches(seed=1, containers=1, lines=5, per_batch=5)[0]
    day = 1_613_347_200_000_000_000  # 2021-02-15T00:00:00Z
    batch = batch.derive(
        times=[day - 1, day, day + 1, day + 86_399_999_999_999, day + 86_400 * 10**9]
    )
    resolver = IndexResolver(IndexPattern("logstash-%Y.%m.%d"), "ecs")
    enc = encode_batch(batch, resolver, "ecs")

    actions = [json.loads(a)["create"] for a in enc.actions]
    assert [
        "logstash-2021.02.14",
        "logstash-2021.02.15",
        "logstash-2021.02.15",
        "logstash-2021.02.15",
        "logstash-2021.02.16",
    ] == [a["_index"] for a in actions]
    assert [batch.event_id(i) for i in range(5)] == [a["_id"] for a in actions]
    assert encode_documents(batch, "ecs") == enc.docs


def test_index_field_references_fallback_and_pod_annotation() -> None:
    batch = make_batches(seed=1, containers=1, lines=2, per_batch=2)[0]
    ns = batch.ctx.namespace
    pat = IndexPattern("k8s-{kubernetes.namespace}-{kubernetes.labels.missing:-none}-%Y")
    by_field = IndexResolver(pat, "ecs").names(batch)
    annotated = batch.derive(
        ctx=batch.ctx.with_meta(
            meta_ecs=batch.ctx.meta_ecs,
            meta_fluentd=batch.ctx.meta_fluentd,
            extra={"index": "Team-A/{kubernetes.pod.name}"},
        )
    )
    by_annotation = IndexResolver(pat, "ecs").names(annotated)
    missing = IndexResolver(IndexPattern("x-{nope.nothing}"), "ecs").names(batch)

    year = __import__("time").gmtime(batch.times[0] // 10**9).tm_year
    assert json.dumps(f"k8s-{ns}-none-{year}").encode() == by_field[0]
    assert json.dumps(f"team-a_{batch.ctx.pod}").encode() == by_annotation[0]
    assert b'"x-unknown"' == missing[0]


def test_index_names_are_made_acceptable() -> None:
    assert "a_b_c" == sanitize_index("A/B*C")
    assert "x" == sanitize_index("_-x")
    assert "kubelogs" == sanitize_index("..")


def test_validate_rejects_bad_index_patterns_and_urls() -> None:
    base = {"type": "elasticsearch", "inputs": ["x"], "hosts": ["http://es:9200"]}
    for bad in ({"index": "a-{kubernetes.namespace"}, {"index": "a-{ }"}, {"hosts": ["es:9200"]}):
        with pytest.raises(ValidationError):
            ElasticsearchConfig.model_validate({**base, **bad})


def test_validate_rejects_two_auth_methods_and_cert_without_key() -> None:
    base = {"type": "elasticsearch", "inputs": ["x"], "hosts": ["http://es:9200"]}
    with pytest.raises(ValidationError, match="exactly one"):
        ElasticsearchConfig.model_validate(
            {**base, "auth": {"user": "u", "password": "p", "api_key": "k"}}
        )
    with pytest.raises(ValidationError, match="go together"):
        ElasticsearchConfig.model_validate({**base, "tls": {"cert_file": "/c.pem"}})


def test_secrets_do_not_show_in_the_config_repr() -> None:
    cfg = ElasticsearchConfig.model_validate(
        {
            "type": "elasticsearch",
            "inputs": ["x"],
            "hosts": ["http://es:9200"],
            "auth": {"user": "u", "password": "hunter2-secret"},
        }
    )

    assert "hunter2-secret" not in repr(cfg)
    assert "hunter2-secret" not in str(cfg.model_dump())


# -- request builder ---------------------------------------------------------------------------


def test_bulk_body_interleaves_actions_and_documents_and_subsets_keep_owners() -> None:
    batch = make_batches(seed=1, containers=1, lines=3, per_batch=3)[0]
    enc = encode_batch(batch, IndexResolver(IndexPattern("i"), "ecs"), "ecs")
    req = BulkRequest()
    tracker = BatchTracker(batch, 3)
    req.add(enc, tracker)
    sub = req.subset([2])

    lines = req.body().split(b"\n")
    assert [enc.actions[0], enc.docs[0], enc.actions[1]] == lines[:3]
    assert len(req.body()) == req.nbytes
    assert enc.actions[2] + b"\n" + enc.docs[2] + b"\n" == sub.body()
    assert [tracker] == sub.owners
    assert req.body() == gzip.decompress(gzip_body(req.body()))


# -- retry policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"create": {"status": 201}}, Indexed()),
        ({"create": {"status": 409}}, Indexed(duplicate=True)),
        ({"create": {"status": 429, "error": {"type": "x"}}}, Retry(429, "x")),
        ({"create": {"status": 503, "error": {"type": "y"}}}, Retry(503, "y")),
        (
            {"create": {"status": 400, "error": {"type": "es_rejected_execution_exception"}}},
            Retry(400, "es_rejected_execution_exception"),
        ),
        (
            {"create": {"status": 403, "error": {"type": "cluster_block_exception"}}},
            Retry(403, "cluster_block_exception"),
        ),
        (
            {
                "create": {
                    "status": 400,
                    "error": {"type": "mapper_parsing_exception", "reason": "failed to parse [a]"},
                }
            },
            DeadLetter(400, "mapper_parsing_exception", "failed to parse [a]"),
        ),
    ],
)
def test_items_are_classified(item: dict[str, Any], expected: object) -> None:
    assert expected == classify_item(item)


def test_whole_request_errors_are_retryable_and_deployment_errors_say_so() -> None:
    classify_response(200, b"{}")
    for status in (429, 500, 502, 503):
        with pytest.raises(RetryableError) as e:
            classify_response(status, b"busy")
        assert not e.value.permanent_cause
    with pytest.raises(RetryableError, match="authentication") as e:
        classify_response(401, b"")
    assert e.value.permanent_cause


# -- run loop ----------------------------------------------------------------------------------


async def test_every_event_indexed_once_under_its_id_and_acked(tmp_path: Path) -> None:
    cluster = FakeCluster()
    sink, metrics = make_sink(tmp_path, cluster)
    batches = make_batches(seed=4, containers=3, lines=600, per_batch=50)
    feed = Feed(sink)
    await feed.send(batches)
    await until(lambda: len(feed.acked) == len(batches), "every batch acknowledged")
    await feed.send(batches[:3])  # a resend after a crash
    await until(lambda: len(feed.acked) == len(batches) + 3, "the resend acknowledged")
    await feed.finish()

    assert sorted(all_ids(batches)) == sorted(cluster.docs)
    sample = {"component_id": "es"}
    assert len(all_ids(batches)) == metrics.registry.get_sample_value(
        "kubelogs_elasticsearch_indexed_events_total", sample
    )
    assert len(all_ids(batches[:3])) == metrics.registry.get_sample_value(
        "kubelogs_elasticsearch_duplicate_events_total", sample
    )
    assert (
        "date_nanos"
        == cluster.templates["kubelogs"]["template"]["mappings"]["properties"]["@timestamp"]["type"]
    )
    assert ["logstash-*"] == cluster.templates["kubelogs"]["index_patterns"]
    # max_events = 100: a request is sent once it holds 100, and batches are not split
    assert all(len(body) // 2 < 100 + 50 for body in cluster.bulk_bodies)


async def test_item_429s_are_resent_alone_and_ack_waits_for_them(tmp_path: Path) -> None:
    cluster = FakeCluster()
    busy: set[str] = set()

    def policy(_id: str, _doc: dict[str, Any], attempt: int) -> int | None:
        if _id in busy and attempt <= 3:
            return 429
        return None

    cluster.item_policy = policy
    sink, metrics = make_sink(tmp_path, cluster, bulk={"flush_interval": "5ms", "max_events": 1000})
    batches = make_batches(seed=5, containers=1, lines=40, per_batch=40)
    ids = all_ids(batches)
    busy.update(ids[::4])
    feed = Feed(sink)
    await feed.send(batches)
    await until(lambda: feed.acked == [0], "the batch acknowledged")
    await feed.finish()

    resent = [
        json.loads(line)["create"]["_id"] for body in cluster.bulk_bodies[1:] for line in body[::2]
    ]
    assert sorted(ids) == sorted(cluster.docs)
    assert sorted(ids[::4] * 3) == sorted(resent)
    assert 30 == metrics.registry.get_sample_value(
        "kubelogs_elasticsearch_retried_events_total", {"component_id": "es"}
    )


async def test_whole_request_failures_hold_acks_back_until_the_cluster_answers(
    tmp_path: Path,
) -> None:
    cluster = FakeCluster()
    cluster.fail_requests = [503, "refused", 429, 502, "refused"]
    sink, _ = make_sink(tmp_path, cluster)
    batches = make_batches(seed=6, containers=1, lines=30, per_batch=30)
    feed = Feed(sink)
    await feed.send(batches)
    await until(lambda: len(cluster.fail_requests) == 2, "three failed attempts")
    acked_while_failing = list(feed.acked)
    await until(lambda: feed.acked == [0], "acknowledged once the cluster answers")
    await feed.finish()

    assert [] == acked_while_failing
    assert sorted(all_ids(batches)) == sorted(cluster.docs)


async def test_a_request_too_large_for_the_cluster_is_split(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.fail_requests = [413, 413]
    sink, _ = make_sink(tmp_path, cluster, bulk={"max_events": 1000, "flush_interval": "5ms"})
    batches = make_batches(seed=9, containers=1, lines=40, per_batch=40)
    feed = Feed(sink)
    await feed.send(batches)
    await until(lambda: feed.acked == [0], "acknowledged")
    await feed.finish()

    assert sorted(all_ids(batches)) == sorted(cluster.docs)
    assert len(cluster.bulk_bodies) >= 3  # halves, one of them halved again


async def test_rejected_documents_go_to_the_dead_letter_queue_with_reason(tmp_path: Path) -> None:
    cluster = FakeCluster()
    batches = make_batches(seed=7, containers=1, lines=20, per_batch=10)
    bad = set(all_ids(batches)[3:5])
    cluster.item_policy = lambda _id, _d, _n: (
        (400, "mapper_parsing_exception", "failed to parse field [x]") if _id in bad else None
    )
    sink, metrics = make_sink(tmp_path, cluster)
    feed = Feed(sink)
    await feed.send(batches)
    await until(lambda: len(feed.acked) == 2, "both batches acknowledged")
    await feed.finish()

    entries = [e for _, e in dead_letter.iter_entries(tmp_path / "dlq")]
    docs = {b.event_id(i): d for b in batches for i, d in enumerate(encode_documents(b))}
    assert sorted(bad) == sorted(e.id for e in entries)
    assert all(e.reason == "failed to parse field [x]" and e.status == 400 for e in entries)
    assert all(bytes(e.document) == docs[e.id] for e in entries)
    assert 18 == len(cluster.docs)
    assert 2 == metrics.registry.get_sample_value(
        "kubelogs_elasticsearch_dead_lettered_events_total", {"component_id": "es"}
    )


async def test_gzip_bodies_arrive_intact(tmp_path: Path) -> None:
    cluster = FakeCluster()
    sink, _ = make_sink(tmp_path, cluster, bulk={"compression": "gzip", "flush_interval": "5ms"})
    batches = make_batches(seed=8, containers=2, lines=50, per_batch=25)
    feed = Feed(sink)
    await feed.send(batches)
    await until(lambda: len(feed.acked) == len(batches), "acknowledged")
    await feed.finish()

    assert sorted(all_ids(batches)) == sorted(cluster.docs)


async def test_flavour_from_root_or_header_and_labels_mapping(tmp_path: Path) -> None:
    os_info = await detect_flavour(FakeCluster(flavour="opensearch"))
    es_info = await detect_flavour(FakeCluster(flavour="elasticsearch", root_status=405))

    assert ("opensearch", 2, "GET /") == (os_info.flavour, os_info.major, os_info.detected_by)
    assert ("elasticsearch", "X-elastic-product header") == (es_info.flavour, es_info.detected_by)
    labels = mappings("ecs", os_info)["properties"]["kubernetes"]["properties"]["labels"]
    assert {"type": "flat_object"} == labels
    assert {"type": "flattened"} == mappings("ecs", ServerInfo("elasticsearch", 8))["properties"][
        "kubernetes"
    ]["properties"]["labels"]


async def test_health_check_says_in_one_line_what_is_wrong(tmp_path: Path) -> None:
    red = FakeCluster()
    red.health = "red"
    down = FakeCluster()

    async def refuse(*_a: Any, **_k: Any) -> Response:
        raise TransportError("http://es:9200: unreachable: Connection refused", kind="unreachable")

    down.request = refuse  # type: ignore[method-assign]

    assert None is await health_check(FakeCluster())
    assert "cluster health is red" in (await health_check(red) or "")
    assert "unreachable" in (await health_check(down) or "")
    sink, _ = make_sink(tmp_path, down, health_check="fail")
    with pytest.raises(HealthCheckError, match=r"^sinks\.es: http://es:9200: unreachable"):
        await sink.start()


def test_hosts_rotate_and_a_dead_host_is_skipped_until_its_time() -> None:
    pool = HostPool(["http://a", "http://b", "http://c"])
    first = [pool.pick(0.0).url for _ in range(3)]
    pool.mark_dead(pool.hosts[1], now=0.0)
    while_dead = [pool.pick(0.5).url for _ in range(4)]
    later = [pool.pick(100.0).url for _ in range(3)]

    assert ["http://a", "http://b", "http://c"] == first
    assert "http://b" not in while_dead
    assert {"http://a", "http://b", "http://c"} == set(later)


async def test_no_template_when_the_index_starts_with_a_field(tmp_path: Path) -> None:
    """A template on a guessed pattern would miss the indices (or catch others'): none
    is installed, and `template.patterns` makes one."""
    bare = FakeCluster()
    named = FakeCluster()
    await make_sink(tmp_path, bare, index="{kubernetes.namespace}-%Y")[0].start()
    await make_sink(
        tmp_path, named, index="{kubernetes.namespace}-%Y", template={"patterns": ["*-2*"]}
    )[0].start()

    assert {} == bare.templates
    assert ["*-2*"] == named.templates["kubelogs"]["index_patterns"]


async def test_template_refresh_interval_is_an_index_setting(tmp_path: Path) -> None:
    """`template.refresh_interval` reaches the indices through the template; unset, the
    cluster's default stays."""
    tuned = FakeCluster()
    plain = FakeCluster()
    await make_sink(tmp_path, tuned, template={"refresh_interval": "500ms"})[0].start()
    await make_sink(tmp_path, plain)[0].start()

    expected = {"index.refresh_interval": "500ms"}
    assert expected == tuned.templates["kubelogs"]["template"]["settings"]
    assert "settings" not in plain.templates["kubelogs"]["template"]


@pytest.mark.parametrize("flavour", ["elasticsearch", "opensearch"])
async def test_retention_installs_a_deletion_policy_attached_to_the_indices(
    tmp_path: Path, flavour: str
) -> None:
    cluster = FakeCluster(flavour=flavour)
    bare = FakeCluster(flavour=flavour)
    bare.no_lifecycle = True
    await make_sink(tmp_path, cluster, retention="30d")[0].start()
    await make_sink(tmp_path, bare, retention="36h")[0].start()

    template = cluster.templates["kubelogs"]
    if flavour == "elasticsearch":
        policy = cluster.policies["/_ilm/policy/kubelogs"]["policy"]
        assert "30d" == policy["phases"]["delete"]["min_age"]
        assert {"index.lifecycle.name": "kubelogs"} == template["template"]["settings"]
    else:
        policy = cluster.policies["/_plugins/_ism/policies/kubelogs"]["policy"]
        assert ["logstash-*"] == policy["ism_template"][0]["index_patterns"]
        assert "30d" == policy["states"][0]["transitions"][0]["conditions"]["min_index_age"]
        assert "settings" not in template["template"]
    # no ILM/ISM: the template is still installed, without the setting
    assert "settings" not in bare.templates["kubelogs"]["template"]
