"""Documents straight into a real Elasticsearch/OpenSearch node, as the sink writes them:
the sink's own mappings (`health.mappings`, ``@timestamp`` as ``date_nanos``), its own
bulk actions and documents (`encoder.encode_batch`: ``_id`` = ``<prefix>-<hex offset>``),
without an agent in between. For tests of what reads an index (``kubelogs ui --es``)
that need exact control over the documents (for instance hundreds sharing one
nanosecond), and that an agent would only make slower."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Sequence

from kubelogs.codecs.document import Schema
from kubelogs.pipeline.event import Batch
from kubelogs.sinks.elasticsearch.encoder import IndexPattern, IndexResolver, encode_batch
from kubelogs.sinks.elasticsearch.health import ServerInfo, mappings
from support.es_servers import SearchServer

VERSIONS = {"opensearch": (2, 19), "elasticsearch": (8, 19)}
"""The versions `es_servers` runs (the label mapping depends on them)."""


def load_batches(
    server: SearchServer, index: str, batches: Sequence[Batch], schema: Schema = "ecs"
) -> int:
    """Create `index` with the sink's mappings for `schema`, bulk-index every event of
    `batches` into it and refresh; returns how many documents it holds."""
    info = ServerInfo(server.flavour, *VERSIONS[server.flavour])
    server.request("PUT", f"/{index}", {"mappings": mappings(schema, info)})
    resolver = IndexResolver(IndexPattern(index), schema)
    lines: list[bytes] = []
    for batch in batches:
        encoded = encode_batch(batch, resolver, schema)
        for action, doc in zip(encoded.actions, encoded.docs, strict=True):
            lines += [action, doc]
    for start in range(0, len(lines), 4000):
        body = b"\n".join(lines[start : start + 4000]) + b"\n"
        req = urllib.request.Request(
            f"{server.url}/_bulk",
            data=body,
            method="POST",
            headers={"Content-Type": "application/x-ndjson"},
        )
        with urllib.request.urlopen(req, timeout=120) as r:
            answer = json.loads(r.read())
        assert not answer.get("errors"), str(answer)[:1000]
    server.refresh(index)
    count = server.request("GET", f"/{index}/_count")
    return int(count["count"])
