"""A real Apache Kafka 4.1 broker (KRaft, single node) for tests, from Maven Central jars.

Why this way: as for the search servers (`es_servers`), no distribution download site is
reachable from the test machines but Maven Central is (`jvm_server`).
``tests/integration/kafka/servers/kafka-pom.xml`` resolves ``kafka_2.13`` (runtime
scope) and a log4j binding for its slf4j logging into ``~/.m2``; the classpath Maven
prints is cached under ``~/.cache/kubelogs-test`` (outside the repository).

The node is broker and controller at once (``process.roles=broker,controller``), with
PLAINTEXT and CONTROLLER listeners on free loopback ports; its log directory is formatted
once with ``kafka.tools.StorageTool format --standalone`` and survives `stop`/`start`, so
data and committed offsets outlive a broker restart (tests restart it on purpose).

Start-up speed: ``-Xmx512m -XX:TieredStopAtLevel=1`` and a dynamic class-data archive
(written at the first clean exit, mapped by later runs): 17-26 s cold on 2 busy cores,
5-8 s with the archive.

Resource handling: a `KafkaBroker` owns its JVM (`jvm_server.JvmServer`: started
directly, so its pid is the JVM's; `stop` sends SIGTERM to that pid and waits, then
SIGKILL). Logs go to a file in the directory the caller gives.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from support.jvm_server import (
    CACHE_DIR,
    JvmServer,
    ServerStartError,
    class_data_flags,
    free_port,
    java,
)
from support.jvm_server import resolve_classpath as _resolve_pom

POM = Path(__file__).resolve().parents[1] / "integration" / "kafka" / "servers" / "kafka-pom.xml"
START_TIMEOUT = 180.0
"""Seconds the broker may take to answer metadata requests: 5-26 s is usual."""
PLAIN_USER = ("kubelogs", "plain-secret")
SCRAM_USER = ("scrammer", "scram-secret")
JVM_FLAGS = [
    "-Xms256m",
    "-Xmx512m",
    "-XX:TieredStopAtLevel=1",
    "-XX:+UseSerialGC",
    "-Xlog:cds=off",
    "-Xlog:all=off",
    "-Djava.awt.headless=true",
]


def resolve_classpath() -> list[str]:
    """The broker's jars, resolved by Maven into ~/.m2 (cached by the pom's hash)."""
    return _resolve_pom(POM, "kafka", "-DincludeScope=runtime")


def _cluster_id() -> str:
    """A 22-character base64url cluster id (16 random bytes), as StorageTool wants."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


@dataclass
class KafkaBroker(JvmServer):
    """One running KRaft node; `bootstrap` is its PLAINTEXT address on loopback."""

    home: Path
    log_path: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    sasl_port: int = field(default_factory=free_port)
    """A SASL_PLAINTEXT listener: PLAIN (`PLAIN_USER`) and SCRAM-SHA-256 (`SCRAM_USER`)."""
    proc: subprocess.Popen[bytes] | None = None
    startup_seconds: float = 0.0
    _classpath: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "kafka"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def properties(self) -> Path:
        return self.home / "server.properties"

    def prepare(self) -> KafkaBroker:
        """Resolve the jars, write ``server.properties`` and format the log directory."""
        java()  # no JDK: say so before Maven fetches anything
        self._classpath = resolve_classpath()
        self.home.mkdir(parents=True, exist_ok=True)
        data = self.home / "data"
        self.properties.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
                    "SASL_PLAINTEXT:SASL_PLAINTEXT",
                    "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256",
                    "listener.name.sasl_plaintext.plain.sasl.jaas.config="
                    "org.apache.kafka.common.security.plain.PlainLoginModule required "
                    f'user_{PLAIN_USER[0]}="{PLAIN_USER[1]}";',
                    "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config="
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={data}",
                    "num.partitions=4",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=true",
                    # A record over 1 MiB is refused (MESSAGE_TOO_LARGE): the sink's
                    # dead-letter test relies on the broker's default limit.
                    "message.max.bytes=1048588",
                    "log.flush.interval.messages=9223372036854775807",
                    "num.network.threads=2",
                    "num.io.threads=2",
                    "background.threads=2",
                    "log.cleaner.enable=false",
                    "",
                ]
            )
        )
        if not (data / "meta.properties").exists():
            r = subprocess.run(
                [
                    java(),
                    *JVM_FLAGS,
                    "-cp",
                    os.pathsep.join(self._classpath),
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    _cluster_id(),
                    "-c",
                    str(self.properties),
                    "--standalone",
                    "--add-scram",
                    f"SCRAM-SHA-256=[name={SCRAM_USER[0]},password={SCRAM_USER[1]}]",
                ],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if r.returncode != 0:
                raise ServerStartError(
                    f"kafka StorageTool format failed: {(r.stdout + r.stderr)[-800:]}"
                )
        return self

    def _command(self) -> list[str]:
        digest = hashlib.sha256(os.pathsep.join(self._classpath).encode()).hexdigest()[:12]
        return [
            java(),
            *JVM_FLAGS,
            *class_data_flags(CACHE_DIR / f"kafka-{digest}.jsa"),
            "-cp",
            os.pathsep.join(self._classpath),
            "kafka.Kafka",
            str(self.properties),
        ]

    def start(self, timeout: float = START_TIMEOUT) -> KafkaBroker:
        """Start the JVM and wait until the broker answers a metadata request."""
        assert self._classpath, "prepare() first"
        self._launch(self._command(), timeout)
        return self

    def ready(self) -> bool:
        """The listener accepts and the broker lists its metadata (it has joined its own
        quorum and registered: producers and consumers can work)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
        except OSError:
            return False
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        try:
            md = admin.list_topics(timeout=2)
        except Exception:
            return False
        return bool(md.brokers)

    # -- helpers for tests ---------------------------------------------------------------

    def create_topic(self, name: str, partitions: int = 4) -> None:
        """Create `name` and wait until it exists (idempotent)."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        fut = admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=30)[name]
        try:
            fut.result(60)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
