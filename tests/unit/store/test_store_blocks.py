"""Cutting writes into blocks: limits hold, and every answer survives any cut.

Groups are split across blocks where a block fills up, runs of equal streams are kept
per block, and the message column's line ``i`` must stay document ``i`` of the block
through all of it; the answers are compared with a brute-force evaluation.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubelogs.codecs.document import encode_documents
from kubelogs.pipeline.event import Batch, FileContext, make_id_prefix
from kubelogs.store import ECS_LAYOUT, StoreReader, StoreWriter, WriteGroup
from kubelogs.store.index import INDEX_NAME

T0 = 1_736_935_200_000_000_000
WORDS = ["alpha", "beta", "Gamma", "delta", "ÉPSILON", "zeta\nnext", "eta-theta"]
STREAMS = ["stdout", "stderr", ""]


def make_group(key: str, start: int, rows: list[tuple[int, int, int]]) -> WriteGroup:
    """A documents group; `rows`: (word index, second word index, stream index) per
    event."""
    messages = [f"{WORDS[a]} {i} {WORDS[b]}" for i, (a, b, _) in enumerate(rows, start)]
    streams = [STREAMS[s] for _, _, s in rows]
    docs = [
        msgspec.json.encode({"message": m, "stream": s} if s else {"message": m})
        for m, s in zip(messages, streams, strict=True)
    ]
    offsets = list(range(start, start + len(rows)))
    return WriteGroup(
        key,
        offsets,
        offsets,
        docs,
        labels={"kubernetes.namespace": key},
        streams=streams,
        messages=messages,
    )


def make_events(
    key: str, start: int, rows: list[tuple[int, int, int]]
) -> tuple[WriteGroup, list[bytes]]:
    """An events group like `make_group`'s, with flags and parsed fields on some rows,
    file offsets that follow the messages' lengths with gaps, and the documents that
    `encode_documents` makes of the same events: what the store must render."""
    messages = [f"{WORDS[a]} {i} {WORDS[b]}" for i, (a, b, _) in enumerate(rows, start)]
    streams = [STREAMS[s] for _, _, s in rows]
    offsets = []
    offset = 1000 * start
    for i, m in enumerate(messages):
        offsets.append(offset)
        offset += len(m.encode()) + 40 + (i % 5 == 4) * 7  # a skipped line now and then
    times = [T0 + 1_000_003 * i for i in range(start, start + len(rows))]
    flags = {i: ("truncated",) for i in range(len(rows)) if i % 7 == 3}
    fields = {i: {"level": "warn", "n": i} for i in range(len(rows)) if i % 4 == 1}
    meta = b'"kubernetes":{"namespace":"' + key.encode() + b'"}'
    ctx = FileContext(
        source_id="t",
        path=f"/var/log/pods/{key}/c/0.log",
        file_key=key,
        id_prefix=make_id_prefix("n", key),
        node="n",
        namespace=key,
        meta_ecs=meta,
    )
    batch = Batch(
        ctx, times, messages, streams, offsets, flags=flags or None, fields=fields or None
    )
    group = WriteGroup(
        key,
        offsets,
        times,
        labels={"kubernetes.namespace": key},
        streams=streams,
        messages=messages,
        path=ctx.path,
        meta=meta,
        flags=flags,
        fields=fields,
    )
    return group, encode_documents(batch)


def has_word(doc: bytes, word: str) -> bool:
    message = msgspec.json.decode(doc)["message"].lower()
    return word.lower() in re.findall(r"\w+", message)


GROUPS = st.lists(
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 2)), max_size=60),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    groups=GROUPS,
    block_docs=st.integers(1, 50),
    block_bytes=st.integers(1, 3000),
    kinds=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_any_cut_gives_the_brute_force_answers(
    tmp_path_factory: pytest.TempPathFactory,
    groups: list[list[tuple[int, int, int]]],
    block_docs: int,
    block_bytes: int,
    kinds: list[bool],
) -> None:
    """Documents and events groups, mixed in blocks cut anywhere: every document comes
    back exactly (rendered ones byte for byte as `encode_documents` makes them)."""
    path = tmp_path_factory.mktemp("blocks") / "s"
    write: list[WriteGroup] = []
    docs: list[bytes] = []
    for k, rows in enumerate(groups):
        if kinds[k]:
            group, rendered = make_events(f"ns{k}", k * 100, rows)
            write.append(group)
            docs += rendered
        else:
            write.append(make_group(f"ns{k}", 0, rows))
            docs += write[-1].docs or []
    with StoreWriter(path, layout=ECS_LAYOUT, block_docs=block_docs, block_bytes=block_bytes) as w:
        w.write(write[: len(write) // 2])
        w.write(write[len(write) // 2 :])

    with StoreReader(path) as reader:
        assert sorted(docs) == sorted(h.doc for h in reader.search("", limit=0))
        for stream in ("stdout", "stderr"):
            expected = sum(1 for g in write for s in g.streams or () if s == stream)
            assert expected == reader.count(f"stream:{stream}")
        assert sum(1 for g in write for s in g.streams or () if not s) == reader.count(
            "not stream:*"
        )
        for word in ("alpha", "gamma", "épsilon", "next", "theta"):
            expected_docs = sorted(d for d in docs if has_word(d, word))
            assert len(expected_docs) == reader.count(word)
            assert expected_docs == sorted(h.doc for h in reader.search(word, limit=0))
        both = sorted(d for d in docs if has_word(d, "alpha") and has_word(d, "beta"))
        assert both == sorted(h.doc for h in reader.search("alpha and beta", limit=0))
        assert len(both) == reader.count("alpha and beta and stream:*") + reader.count(
            "alpha and beta and not stream:*"
        )

    with sqlite3.connect(path / INDEX_NAME) as db:
        sizes = db.execute("SELECT docs FROM blocks").fetchall()
    assert all(n <= block_docs for (n,) in sizes)
    assert len(docs) == sum(n for (n,) in sizes)


def test_blocks_respect_the_byte_limit(tmp_path: Path) -> None:
    rows = [(i % 7, (i * 3) % 7, i % 2) for i in range(400)]
    group = make_group("ns", 0, rows)
    limit = 2000
    with StoreWriter(tmp_path / "s", layout=ECS_LAYOUT, block_bytes=limit) as writer:
        result = writer.write([group])
    with StoreReader(tmp_path / "s") as reader:
        hits = reader.search("", limit=0)
    per_block: dict[int, int] = {}
    for h in hits:
        per_block[h.block] = per_block.get(h.block, 0) + len(h.doc)

    assert sorted(group.docs) == sorted(h.doc for h in hits)
    assert result.blocks == len(per_block) > 1
    assert all(size <= limit for size in per_block.values())
    assert sum(per_block.values()) > limit * (len(per_block) - 1) * 0.9  # filled, not tiny


def test_a_document_larger_than_a_block_is_a_block_alone(tmp_path: Path) -> None:
    docs = [b'{"message":"x"}', b"[" + b"1," * 5000 + b"1]", b"{}"]
    big = WriteGroup("f", [0, 1, 2], [0, 1, 2], docs)
    with StoreWriter(tmp_path / "s", layout=ECS_LAYOUT, block_bytes=1000) as writer:
        result = writer.write([big])
    with StoreReader(tmp_path / "s") as reader:
        stored = sorted(h.doc for h in reader.search("", limit=0))

    assert 3 == result.blocks
    assert sorted(big.docs) == stored
