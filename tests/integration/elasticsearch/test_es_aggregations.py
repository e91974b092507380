"""`kubelogs search --es --histogram/--top` and `kubelogs ui --es` give the local store's
answers: one agent ships a generated tree to a node and to a store at once, then the
aggregations of both are compared bucket for bucket and value for value."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from es_helpers import ship_to_node_and_store

from support.es_servers import SearchServer
from support.waiting import wait_for

UI = [sys.executable, "-m", "kubelogs", "ui"]
QUERIES = ["", "error", "kubernetes.namespace:checkout or stream:stderr"]


def _search(*args: str) -> dict[str, Any]:
    r = subprocess.run(
        [sys.executable, "-m", "kubelogs", "search", "-o", "json", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 0 == r.returncode, r.stderr
    body: dict[str, Any] = json.loads(r.stdout)
    return body


def _ui_get(url: str, route: str, **params: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}{route}?{urllib.parse.urlencode(params)}", timeout=60) as r:
        body: dict[str, Any] = json.loads(r.read())
    return body


def test_histogram_and_top_values_agree_with_the_store(
    tmp_path: Path, server: SearchServer
) -> None:
    index, store, records = ship_to_node_and_store(
        tmp_path, server, lines=4000, seed=9, prefix="aggs"
    )
    agg = ["--histogram", "--top", "kubernetes.namespace", "--top", "stream", "--top-n", "20"]

    for q in QUERIES:
        local = _search("--store", str(store), *agg, q)
        remote = _search("--es", server.url, "--index", index, *agg, q)
        assert local == remote, q
        assert local["total"] > 0, q
    assert records == _search("--store", str(store), *agg)["total"]

    log = (tmp_path / "ui.log").open("wb")
    ui = subprocess.Popen(
        [*UI, "--es", server.url, "--index", index, "--listen", "127.0.0.1:0"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "KUBELOGS_UI_TOKEN": ""},
    )
    try:
        found = wait_for(
            lambda: re.search(r"on (http://127\.0\.0\.1:\d+/)", (tmp_path / "ui.log").read_text()),
            timeout=60,
            what="kubelogs ui --es to listen",
        )
        url = found.group(1)
        page = _ui_get(url, "api/search", q="error", range="all")
        second = _ui_get(url, "api/search", q="error", range="all", before=page["next"])
        doc = page["hits"][0]["doc"]
        context = _ui_get(
            url,
            "api/context",
            path=doc["log"]["file"]["path"],
            offset=str(doc["log"]["offset"]),
            t=page["hits"][0]["t"],
        )
        # `message` is analysed text: no top values, and no failure of the others.
        body = _ui_get(
            url, "api/aggregate", q="error", range="all", top="kubernetes.namespace,message"
        )
        local = _search("--store", str(store), "--top", "kubernetes.namespace", "error")
    finally:
        ui.terminate()
        ui.wait(30)
        log.close()

    assert local["total"] == body["total"] == sum(body["counts"])
    assert [] == body["top"]["message"]
    assert [[v["value"], v["count"]] for v in local["top"]["kubernetes.namespace"]] == body["top"][
        "kubernetes.namespace"
    ]
    lines = context["lines"]
    assert [doc] == [line["doc"] for line in lines if line["current"]]
    offsets = [line["doc"]["log"]["offset"] for line in lines]
    assert offsets == sorted(offsets)
    assert len(lines) > 1
    times = [int(h["t"]) for h in page["hits"] + second["hits"]]
    assert times == sorted(times, reverse=True)
    assert min(400, local["total"]) == len({h["id"] for h in page["hits"] + second["hits"]})
