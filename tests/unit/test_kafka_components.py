"""The Kafka components without a broker: config validation (each rejection named),
the librdkafka settings they produce, topic templates, and how a received record gets
its event id or is flagged malformed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from kubelogs.kafka.metrics import broker_retries, consumer_lags
from kubelogs.kafka.settings import client_settings
from kubelogs.kafka.topics import TopicTemplate
from kubelogs.sinks.kafka import KafkaSinkConfig
from kubelogs.sources.kafka import KafkaSourceConfig, _record, _set_event_id
from support.store_docs import make_batches


def sink(**extra: Any) -> KafkaSinkConfig:
    return KafkaSinkConfig.model_validate(
        {"type": "kafka", "inputs": ["x"], "bootstrap_servers": ["k:9092"], "topic": "t", **extra}
    )


def source(**extra: Any) -> KafkaSourceConfig:
    return KafkaSourceConfig.model_validate(
        {
            "type": "kafka",
            "bootstrap_servers": ["k:9092"],
            "topics": ["t"],
            "group_id": "g",
            **extra,
        }
    )


def test_validate_rejects_bootstrap_server_without_port() -> None:
    with pytest.raises(ValidationError, match="'kafka' is not host:port"):
        sink(bootstrap_servers=["kafka"])


def test_validate_rejects_unknown_compression() -> None:
    with pytest.raises(ValidationError, match="compression"):
        sink(compression="brotli")


def test_validate_rejects_tls_cert_without_key() -> None:
    with pytest.raises(ValidationError, match="`cert_file` and `key_file` go together"):
        sink(tls={"cert_file": "/c.pem"})


def test_validate_rejects_invalid_topic_pattern() -> None:
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        source(topics=["^logs-(["])


def test_validate_rejects_source_without_group() -> None:
    with pytest.raises(ValidationError, match="group_id"):
        KafkaSourceConfig.model_validate(
            {"type": "kafka", "bootstrap_servers": ["k:9092"], "topics": ["t"]}
        )


def test_sasl_and_tls_become_librdkafka_settings() -> None:
    """SASL over TLS, a CA file and a client certificate map to librdkafka's keys;
    extra options are applied last."""
    cfg = sink(
        sasl={"mechanism": "SCRAM-SHA-512", "username": "u", "password": "s3cret"},
        tls={"ca_file": "/ca.pem", "cert_file": "/c.pem", "key_file": "/k.pem"},
        librdkafka_options={"socket.keepalive.enable": True},
    )
    conf = client_settings(cfg, client_id="x")

    assert "SASL_SSL" == conf["security.protocol"]
    assert "SCRAM-SHA-512" == conf["sasl.mechanism"]
    assert ("u", "s3cret") == (conf["sasl.username"], conf["sasl.password"])
    assert "/ca.pem" == conf["ssl.ca.location"]
    assert "/c.pem" == conf["ssl.certificate.location"]
    assert "s3cret" not in repr(cfg)


def test_sink_settings_are_idempotent_acks_all_and_never_time_out(tmp_path: Path) -> None:
    from kubelogs.config.base import BuildContext
    from kubelogs.telemetry.metrics import Metrics

    cx = BuildContext(component_id="k", data_dir=tmp_path, node_name="n", metrics=Metrics())
    conf = sink(librdkafka_options={"linger.ms": 7}).build(cx).producer_settings()

    assert True is conf["enable.idempotence"]
    assert "all" == conf["acks"]
    assert 0 == conf["message.timeout.ms"]
    assert 7 == conf["linger.ms"]
    assert "PLAINTEXT" == conf["security.protocol"]


def test_topic_template_takes_file_metadata_and_sanitizes() -> None:
    (batch,) = make_batches(containers=1, lines=3, per_batch=3)[:1]
    ns = batch.ctx.namespace

    assert "logs" == TopicTemplate("logs", "ecs").resolve(batch)
    assert f"logs-{ns}" == TopicTemplate("logs-{kubernetes.namespace}", "ecs").resolve(batch)
    assert "a_b-unknown" == TopicTemplate("a/b-{kubernetes.nope}", "ecs").resolve(batch)


class _Msg:
    def __init__(self, headers: list[tuple[str, bytes]] | None) -> None:
        self._headers = headers

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers


def test_record_ids_from_header_value_or_partition_place() -> None:
    """The sink's header wins; a value's own event.id is kept; a foreign record gets
    the id of its place in the partition (so a redelivery is recognised)."""
    header = {"message": "a"}
    _set_event_id(header, _Msg([("kubelogs-event-id", b"abc-1f")]), "pfx", 7)  # type: ignore[arg-type]
    own = {"message": "b", "event": {"id": "def-2", "kind": "x"}}
    _set_event_id(own, _Msg(None), "pfx", 8)  # type: ignore[arg-type]
    foreign = {"message": "c", "event": "scalar"}
    _set_event_id(foreign, _Msg(None), "pfx", 9)  # type: ignore[arg-type]

    assert {"id": "abc-1f"} == header["event"]
    assert {"id": "def-2", "kind": "x"} == own["event"]
    assert {"id": "pfx-9"} == foreign["event"]
    assert "scalar" == foreign["event_parsed"]


@pytest.mark.parametrize("value", [b"not json", b'["list"]', b"\xff\xfe", b""])
def test_malformed_values_become_flagged_raw_messages(value: bytes) -> None:
    rec, bad = _record(value)

    assert 1 == bad
    assert value.decode("utf-8", "replace") == rec["message"]
    assert ["malformed"] == rec["log"]["flags"]


def test_stats_give_retries_and_lag() -> None:
    stats = {
        "brokers": {"b1": {"txretries": 3}, "b2": {"txretries": 4}},
        "topics": {
            "t": {
                "partitions": {
                    "0": {"hi_offset": 20, "app_offset": 8, "committed_offset": 5},
                    "1": {"hi_offset": 20, "app_offset": -1001, "committed_offset": 15},
                    "2": {"hi_offset": -1001, "app_offset": 3, "committed_offset": 3},
                    "3": {"hi_offset": 4, "app_offset": -1001, "lo_offset": 0},
                    "-1": {"hi_offset": 9, "app_offset": 1, "committed_offset": 1},
                }
            }
        },
    }

    assert 7 == broker_retries(stats)
    assert {("t", 0): 12, ("t", 1): 5, ("t", 3): 4} == consumer_lags(stats)


def test_event_id_header_is_off_by_default_and_can_be_set() -> None:
    """The id travels in the value (`event.id`); the header is opt-in."""
    assert False is sink().event_id_header
    assert True is sink(event_id_header=True).event_id_header
