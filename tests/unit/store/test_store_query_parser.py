"""The query language parses into the AST every backend compiles."""

from __future__ import annotations

import pytest

from kubelogs.store import QuerySyntaxError, parse_query
from kubelogs.store.query import And, Exists, Match, MatchAll, Node, Not, Or, Range


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", MatchAll()),
        ("   ", MatchAll()),
        ("*", MatchAll()),
        ("error", Match(None, "error")),
        ('"connection refused"', Match(None, "connection refused", phrase=True)),
        ("kubernetes.namespace:payments", Match("kubernetes.namespace", "payments")),
        ('message:"a b"', Match("message", "a b", phrase=True)),
        ("kubernetes.pod.name:web-*", Match("kubernetes.pod.name", "web-*")),
        ("kubernetes.labels.app:*", Exists("kubernetes.labels.app")),
        ("http.status >= 500", Range("http.status", ">=", "500")),
        ("http.status<400", Range("http.status", "<", "400")),
        ("x > 1 and y <= 2", And((Range("x", ">", "1"), Range("y", "<=", "2")))),
        (
            "@timestamp >= 2025-01-15T10:00:00Z",
            Range("@timestamp", ">=", "2025-01-15T10:00:00Z"),
        ),
        ("a b", And((Match(None, "a"), Match(None, "b")))),
        ("a AND b", And((Match(None, "a"), Match(None, "b")))),
        (
            "a or b and c",
            Or((Match(None, "a"), And((Match(None, "b"), Match(None, "c"))))),
        ),
        (
            "(a OR b) and not c",
            And((Or((Match(None, "a"), Match(None, "b"))), Not(Match(None, "c")))),
        ),
        ("NOT not a", Not(Not(Match(None, "a")))),
        ("android or notice", Or((Match(None, "android"), Match(None, "notice")))),
        ('"and"', Match(None, "and", phrase=True)),
        ('x:"say \\"hi\\""', Match("x", 'say "hi"', phrase=True)),
        ("id:containerd://abc", Match("id", "containerd://abc")),
    ],
)
def test_parse_builds_the_expected_tree(text: str, expected: Node) -> None:
    assert expected == parse_query(text)


def test_quoted_star_is_not_a_wildcard() -> None:
    """A quoted value is literal; only unquoted values have wildcards."""
    assert not parse_query('"err*"').wildcard  # type: ignore[union-attr]
    assert parse_query("err*").wildcard  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("a and (", 8),
        ("a)", 2),
        ('error and "unterminated', 11),
        ("kubernetes.namespace:", 22),
        ("a or", 5),
        ("f:(a", 3),
        ("x >= ", 5),
        ("a b ) c", 5),
    ],
)
def test_syntax_error_reports_the_column(text: str, column: int) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_query(text)

    assert column == info.value.column
    assert f"column {column}" in str(info.value)


def test_caret_lines_point_under_the_column() -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_query("level:error and )")

    query_line, caret_line = info.value.caret_lines().splitlines()
    assert "level:error and )" == query_line
    assert ")" == query_line[caret_line.index("^")]
