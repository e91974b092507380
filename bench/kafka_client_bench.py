"""aiokafka vs confluent-kafka on this machine: records per CPU-second and peak memory.

Each client runs in its own process (so RSS and CPU are its own) against a real broker,
producing N JSON documents of ~300 bytes the way the `kafka` sink does (key, one header,
lz4, idempotent, acks=all), then consuming them back in a consumer group as the `kafka`
source does. CPU is user+sys of the process (all threads: librdkafka's included).

    uv run --with 'aiokafka[lz4]' python bench/kafka_client_bench.py [--bootstrap HOST:PORT] [-n N]

Without ``--bootstrap`` it starts the test broker (`tests/support/kafka_broker.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

DOC = (
    b'{"@timestamp":"2026-11-30T10:00:00.123456789Z","message":"GET /api/v1/items?id=%08d '
    b'200 12ms","stream":"stdout","log":{"file":{"path":"/var/log/pods/default_web_1/'
    b'nginx/0.log"},"offset":%d},"kubernetes":{"namespace":"default","pod":{"name":"web",'
    b'"uid":"8c1e"},"container":{"name":"nginx"}},"host":{"name":"node-1"}}'
)


def _rss_peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _docs(n: int) -> list[bytes]:
    return [DOC % (i, i * 300) for i in range(n)]


def run_confluent(bootstrap: str, topic: str, n: int) -> dict[str, Any]:
    from confluent_kafka import Consumer, Producer

    docs = _docs(n)
    cpu0, t0 = _cpu(), time.monotonic()
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": 50,
            "batch.size": 1 << 20,
        }
    )
    acked = 0

    def done(err: Any, msg: Any) -> None:
        nonlocal acked
        if err is None:
            acked += 1

    headers = [("kubelogs-event-id", b"0123456789abcdef0123-12c")]
    for i, d in enumerate(docs):
        while True:
            try:
                p.produce(topic, d, b"pod-%d" % (i % 20), headers=headers, on_delivery=done)
                break
            except BufferError:
                p.poll(0.05)
        if i % 1000 == 0:
            p.poll(0)
    p.flush(120)
    produce_cpu, produce_wall = _cpu() - cpu0, time.monotonic() - t0
    assert acked == n, acked
    cpu0, t0 = _cpu(), time.monotonic()
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    got = 0
    while got < n:
        for m in c.consume(1000, 1.0):
            if m.error() is None:
                got += 1
    c.commit(asynchronous=False)
    c.close()
    return {
        "client": "confluent-kafka",
        "produce_cpu_s_per_1M": produce_cpu / n * 1e6,
        "produce_rec_per_s": n / produce_wall,
        "consume_cpu_s_per_1M": (_cpu() - cpu0) / n * 1e6,
        "peak_rss_mib": _rss_peak_mib(),
    }


async def _run_aiokafka(bootstrap: str, topic: str, n: int) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    docs = _docs(n)
    cpu0, t0 = _cpu(), time.monotonic()
    p = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        compression_type="lz4",
        linger_ms=50,
        max_batch_size=1 << 20,
    )
    await p.start()
    headers = [("kubelogs-event-id", b"0123456789abcdef0123-12c")]
    futs = []
    for i, d in enumerate(docs):
        futs.append(await p.send(topic, d, key=b"pod-%d" % (i % 20), headers=headers))
        if len(futs) >= 10_000:
            await asyncio.gather(*futs)
            futs = []
    await asyncio.gather(*futs)
    await p.stop()
    produce_cpu, produce_wall = _cpu() - cpu0, time.monotonic() - t0
    cpu0 = _cpu()
    c = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await c.start()
    got = 0
    while got < n:
        batches = await c.getmany(timeout_ms=1000, max_records=1000)
        got += sum(len(v) for v in batches.values())
    await c.commit()
    await c.stop()
    return {
        "client": "aiokafka",
        "produce_cpu_s_per_1M": produce_cpu / n * 1e6,
        "produce_rec_per_s": n / produce_wall,
        "consume_cpu_s_per_1M": (_cpu() - cpu0) / n * 1e6,
        "peak_rss_mib": _rss_peak_mib(),
    }


def _child(client: str, bootstrap: str, n: int) -> None:
    topic = f"bench-{client}-{uuid.uuid4().hex[:6]}"
    if client == "confluent":
        res = run_confluent(bootstrap, topic, n)
    else:
        res = asyncio.run(_run_aiokafka(bootstrap, topic, n))
    print(json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bootstrap")
    ap.add_argument("-n", type=int, default=300_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.bootstrap, args.n)
        return
    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from support.kafka_broker import KafkaBroker

        tmp = Path(tempfile.mkdtemp(prefix="kafka-bench-"))
        broker = KafkaBroker(home=tmp / "home", log_path=tmp / "kafka.log").prepare().start()
        bootstrap = broker.bootstrap
    try:
        for _ in range(args.reps):
            for client in ("confluent", "aiokafka"):
                argv = [sys.executable, __file__, "--child", client, "--bootstrap", bootstrap]
                out = subprocess.run(
                    [*argv, "-n", str(args.n)],
                    capture_output=True,
                    text=True,
                    env={**os.environ},
                )
                print(out.stdout.strip() or out.stderr[-500:], flush=True)
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
