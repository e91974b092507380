"""The same AST compiles to Elasticsearch query DSL with Kibana's KQL meaning."""

from __future__ import annotations

from typing import Any

import pytest

from kubelogs.store import parse_query
from kubelogs.store.compile_es import compile_es, search_body


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {"match_all": {}}),
        ("error", {"match": {"message": "error"}}),
        ('"connection refused"', {"match_phrase": {"message": "connection refused"}}),
        ("10.0.0.1", {"match_phrase": {"message": "10.0.0.1"}}),
        ("Err*", {"wildcard": {"message": {"value": "err*", "case_insensitive": True}}}),
        ("kubernetes.namespace:payments", {"match": {"kubernetes.namespace": "payments"}}),
        ("kubernetes.pod.name:web-*", {"wildcard": {"kubernetes.pod.name": {"value": "web-*"}}}),
        ('kubernetes.pod.name:"web *"', {"match_phrase": {"kubernetes.pod.name": "web *"}}),
        ("kubernetes.labels.app:*", {"exists": {"field": "kubernetes.labels.app"}}),
        ("http.status >= 500", {"range": {"http.status": {"gte": 500}}}),
        ("took < 2.5", {"range": {"took": {"lt": 2.5}}}),
        (
            "@timestamp > 2025-01-15T10:00:00Z",
            {"range": {"@timestamp": {"gt": "2025-01-15T10:00:00Z"}}},
        ),
        (
            "error and not kubernetes.namespace:kube-system",
            {
                "bool": {
                    "filter": [
                        {"match": {"message": "error"}},
                        {
                            "bool": {
                                "must_not": [{"match": {"kubernetes.namespace": "kube-system"}}]
                            }
                        },
                    ]
                }
            },
        ),
        (
            "a or b",
            {
                "bool": {
                    "should": [{"match": {"message": "a"}}, {"match": {"message": "b"}}],
                    "minimum_should_match": 1,
                }
            },
        ),
    ],
)
def test_compile_es_builds_query_dsl(text: str, expected: dict[str, Any]) -> None:
    assert expected == compile_es(parse_query(text))


def test_compile_es_uses_the_fluentd_message_field() -> None:
    assert {"match": {"log": "boom"}} == compile_es(parse_query("boom"), message_field="log")


def test_search_body_sorts_newest_first_and_bounds_time() -> None:
    body = search_body(parse_query("error"), since="2025-01-15T10:00:00Z", size=5)

    assert {
        "query": {
            "bool": {
                "filter": [
                    {"match": {"message": "error"}},
                    {"range": {"@timestamp": {"gte": "2025-01-15T10:00:00Z"}}},
                ]
            }
        },
        "sort": [{"@timestamp": {"order": "desc"}}],
        "size": 5,
    } == body
