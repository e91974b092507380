"""The fixtures' nodes are the real servers the sink's tests rely on."""

from __future__ import annotations

from support.es_servers import SearchServer


def test_server_accepts_create_and_reports_conflict(server: SearchServer) -> None:
    """A bulk `create` under an existing `_id` is a 409 on both flavours: what the sink
    counts on to make resends harmless."""
    import json
    import urllib.request

    line = {"create": {"_index": "fixture-check", "_id": "a"}}
    doc = {"@timestamp": "2021-02-15T10:00:00.123456789Z", "message": "x"}
    body = (json.dumps(line) + "\n" + json.dumps(doc) + "\n") * 2
    req = urllib.request.Request(
        server.url + "/_bulk?refresh=true",
        data=body.encode(),
        method="POST",
        headers={"Content-Type": "application/x-ndjson"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        res = json.loads(r.read())

    assert [201, 409] == [i["create"]["status"] for i in res["items"]]
    assert ["a"] == server.ids("fixture-check")
