"""The built-in formats on real lines: klog (kubelet, client-go), nginx and Apache
access logs (common, combined, the nginx image's default), RFC 5424 (the RFC's own
examples) and RFC 3164 syslog, logfmt (logrus, go-kit, slog) and user regexes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from kubelogs.parsing import PARSE_ERROR, ParserConfig, build_parser
from support.parsing import T0, make_batch


def parse(parser: str | ParserConfig, lines: Sequence[str]) -> tuple[list[Any], set[int]]:
    lines = list(lines)
    out = build_parser(parser)(make_batch(lines))
    fields = out.fields or {}
    flags = out.flags or {}
    assert all(PARSE_ERROR in f for f in flags.values())
    assert out.messages == lines
    return [fields.get(i) for i in range(len(lines))], set(flags)


class TestKlog:
    LINES = (
        'I0115 10:00:00.123456    1234 kubelet.go:2229] "SyncLoop ADD" source="api" '
        'pods=["default/web-7d4b9"]',
        'E1130 19:01:02.345678    5678 pod_workers.go:1301] "Error syncing pod, skipping" '
        'err="failed to \\"StartContainer\\" for \\"app\\" with CrashLoopBackOff" '
        'pod="default/web-7d4b9" podUID="8c1e"',
        "W0115 10:00:01.000001       1 reflector.go:535] k8s.io/client-go/informers/"
        "factory.go:150: failed to list *v1.Pod: Unauthorized",
        "F0115 10:00:02.500000       7 server.go:269] failed to run Kubelet: unable to load "
        "bootstrap kubeconfig",
        "Flag --cgroup-driver has been deprecated",
        "I0115 10:00:00.123 1 x.go:1] short fraction",
    )

    def test_header_becomes_ecs_fields(self) -> None:
        fields, failed = parse("klog", self.LINES)

        assert {4, 5} == failed
        assert {
            "log": {
                "level": "info",
                "origin": {"file": {"name": "kubelet.go", "line": 2229}},
            },
            "process": {"thread": {"id": 1234}},
            "klog": {
                "time": "0115 10:00:00.123456",
                "message": '"SyncLoop ADD" source="api" pods=["default/web-7d4b9"]',
            },
        } == fields[0]
        assert ["info", "error", "warn", "fatal"] == [f["log"]["level"] for f in fields[:4]]
        assert "pod_workers.go" == fields[1]["log"]["origin"]["file"]["name"]
        assert 1 == fields[2]["process"]["thread"]["id"]

    def test_time_key_uses_the_runtime_year(self) -> None:
        parser = build_parser(ParserConfig(type="klog", time_key="klog.time"))

        out = parser(make_batch(list(self.LINES[:1])))

        assert [T0 + 123_456_000] == out.times  # T0 is 2025-01-15T10:00:00Z


class TestAccessLogs:
    COMBINED = (
        '93.180.71.3 - - [17/May/2015:08:05:32 +0000] "GET /downloads/product_1 HTTP/1.1" '
        '304 0 "-" "Debian APT-HTTP/1.3 (0.8.16~exp12ubuntu10.21)"'
    )
    NGINX_IMAGE = (
        '172.17.0.1 - - [30/Nov/2026:19:00:00 +0000] "GET /index.html?q=1 HTTP/1.1" 200 615 '
        '"https://example.com/start" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36" "-"'
    )
    COMMON = '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326'
    ESCAPED = (
        '10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /a\\"b HTTP/1.1" 400 - "-" "say \\"hi\\""'
    )
    TLS_PROBE = (
        '10.0.0.9 - - [30/Nov/2026:19:00:00 +0000] "\\x16\\x03\\x01\\x02\\x00" 400 157 "-" "-"'
    )

    def test_combined(self) -> None:
        fields, failed = parse("nginx", [self.COMBINED])

        assert set() == failed
        assert {
            "source": {"address": "93.180.71.3"},
            "http": {
                "request": {"method": "GET"},
                "response": {"status_code": 304, "body": {"bytes": 0}},
                "version": "1.1",
            },
            "url": {"original": "/downloads/product_1"},
            "user_agent": {"original": "Debian APT-HTTP/1.3 (0.8.16~exp12ubuntu10.21)"},
            "nginx": {"access": {"time": "17/May/2015:08:05:32 +0000"}},
        } == fields[0]

    def test_nginx_image_default_with_referrer_and_forwarded_for(self) -> None:
        fields, _ = parse("nginx", [self.NGINX_IMAGE])

        assert "https://example.com/start" == fields[0]["http"]["request"]["referrer"]
        assert "/index.html?q=1" == fields[0]["url"]["original"]
        assert 615 == fields[0]["http"]["response"]["body"]["bytes"]

    def test_apache_common_with_user(self) -> None:
        fields, failed = parse("apache", [self.COMMON, "AH00558: httpd: Could not reliably"])

        assert {1} == failed
        assert {"name": "frank"} == fields[0]["user"]
        assert 200 == fields[0]["http"]["response"]["status_code"]
        assert "user_agent" not in fields[0]
        assert "10/Oct/2000:13:55:36 -0700" == fields[0]["apache"]["access"]["time"]

    def test_escaped_quotes_and_missing_size(self) -> None:
        fields, _ = parse("apache", [self.ESCAPED])

        assert '/a\\"b' == fields[0]["url"]["original"]
        assert 'say \\"hi\\"' == fields[0]["user_agent"]["original"]
        assert "body" not in fields[0]["http"]["response"]

    def test_a_request_that_is_not_http_keeps_its_text(self) -> None:
        fields, _ = parse("nginx", [self.TLS_PROBE])

        assert "method" not in fields[0]["http"].get("request", {})
        assert "\\x16\\x03\\x01\\x02\\x00" == fields[0]["url"]["original"]
        assert 400 == fields[0]["http"]["response"]["status_code"]

    def test_time_key_makes_the_request_time_the_event_time(self) -> None:
        parser = build_parser(ParserConfig(type="nginx", time_key="nginx.access.time"))

        out = parser(make_batch([self.COMBINED]))

        assert [1_431_849_932_000_000_000] == out.times


class TestSyslog:
    RFC5424 = (
        "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
        "\ufeff'su root' failed for lonvick on /dev/pts/8",
        "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - "
        "%% It's time to make the do-nuts.",
        '<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] An application event log entry',  # noqa: E501
        '<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]',  # noqa: E501
    )
    RFC3164 = (
        "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
        "<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!",
        "Jan 15 10:00:00 node-1 kubelet[1234]: I0115 10:00:00.123456 1 a.go:1] x",
    )

    def test_rfc5424_examples(self) -> None:
        fields, failed = parse("syslog", self.RFC5424)

        assert set() == failed
        assert {
            "log": {
                "level": "critical",
                "syslog": {
                    "priority": 34,
                    "facility": {"code": 4},
                    "severity": {"code": 2, "name": "critical"},
                    "version": "1",
                    "hostname": "mymachine.example.com",
                    "appname": "su",
                    "msgid": "ID47",
                },
            },
            "syslog": {
                "timestamp": "2003-10-11T22:14:15.003Z",
                "message": "'su root' failed for lonvick on /dev/pts/8",
            },
        } == fields[0]
        assert "8710" == fields[1]["log"]["syslog"]["procid"]
        assert "info" == fields[1]["log"]["level"]  # 165 = local4.notice
        assert fields[2]["log"]["syslog"]["structured_data"].endswith('eventID="1011"]')
        assert "An application event log entry" == fields[2]["syslog"]["message"]
        assert "message" not in fields[3]["syslog"]
        assert fields[3]["log"]["syslog"]["structured_data"].endswith('class="high"]')

    def test_rfc3164_with_and_without_priority(self) -> None:
        fields, failed = parse("syslog", self.RFC3164)

        assert set() == failed
        assert "su" == fields[0]["log"]["syslog"]["appname"]
        assert "critical" == fields[0]["log"]["level"]
        assert "Use the BFG!" == fields[1]["syslog"]["message"]
        assert "appname" not in fields[1]["log"]["syslog"]
        assert {"hostname": "node-1", "appname": "kubelet", "procid": "1234"} == fields[2]["log"][
            "syslog"
        ]
        assert "level" not in fields[2]["log"]

    def test_not_syslog_is_flagged(self) -> None:
        _, failed = parse("syslog", ["<999>1 2003-10-11T22:14:15Z h a - - - x", "hello", ""])

        assert {0, 1, 2} == failed

    def test_time_key_reads_both_formats(self) -> None:
        parser = build_parser(ParserConfig(type="syslog", time_key="syslog.timestamp"))

        out = parser(make_batch([self.RFC5424[0], self.RFC3164[2]]))

        assert [1_065_910_455_003_000_000, T0] == out.times


class TestLogfmt:
    LINES = (
        'time="2025-01-15T10:00:00Z" level=info msg="Starting server" addr=":8080"',
        "ts=2025-01-15T10:00:00.123Z caller=main.go:42 level=warn "
        'msg="config reload failed" err="open /etc/x: no such file"',
        'time=2025-01-15T10:00:00.000Z level=ERROR msg="db \\"down\\"" attempt=3 retry',
        "just some words",
        'a=1 b="unterminated',
        "key= other=2",
    )

    def test_pairs_become_fields(self) -> None:
        fields, failed = parse("logfmt", self.LINES)

        assert {3, 4} == failed
        assert {
            "level": "info",
            "msg": "Starting server",
            "addr": ":8080",
            "logfmt": {"time": "2025-01-15T10:00:00Z"},  # `time` is a fluentd field
            "log": {"level": "info"},
        } == fields[0]
        assert "main.go:42" == fields[1]["caller"]
        assert "warn" == fields[1]["log"]["level"]
        assert 'db "down"' == fields[2]["msg"]
        assert fields[2]["retry"] is True
        assert "error" == fields[2]["log"]["level"]
        assert {"key": "", "other": "2"} == fields[5]

    def test_types_cast_values(self) -> None:
        setting = ParserConfig(type="logfmt", types={"attempt": "int", "level": "int"})

        fields, _ = parse(setting, [self.LINES[2]])

        assert 3 == fields[0]["attempt"]
        assert "ERROR" == fields[0]["level"]  # does not convert: kept as it was

    def test_clashing_keys_go_under_logfmt(self) -> None:
        fields, _ = parse("logfmt", ["time=1 message=x stream=y level=info"])

        assert {"time": "1", "message": "x", "stream": "y"} == fields[0]["logfmt"]


class TestRegex:
    def test_named_groups_with_casts(self) -> None:
        setting = ParserConfig(
            type="regex",
            pattern=r"^(?P<when>\S+) \[(?P<level>\w+)\] (?P<took>[\d.]+)ms ok=(?P<ok>\w+)"
            r" n=(?P<n>\S+)(?: (?P<rest>.*))?$",
            types={"took": "float", "ok": "bool", "n": "int"},
        )
        lines = [
            "2025-01-15T10:00:00Z [ERROR] 12.5ms ok=true n=7 trailing words",
            "2025-01-15T10:00:00Z [info] 1ms ok=maybe n=x",
            "no match here",
            "2025-01-15T10:00:00Z [Wärning] 1ms ok=no n=1",
        ]

        fields, failed = parse(setting, lines)

        assert {2, 3} == failed  # \w in RE2 is ASCII: "Wärning" does not match
        assert {
            "when": "2025-01-15T10:00:00Z",
            "level": "ERROR",
            "took": 12.5,
            "ok": True,
            "n": 7,
            "rest": "trailing words",
            "log": {"level": "error"},
        } == fields[0]
        assert "maybe" == fields[1]["ok"]
        assert "x" == fields[1]["n"]
        assert "rest" not in fields[1]  # a group outside the match is left out

    def test_unicode_groups_are_sliced_by_characters(self) -> None:
        setting = ParserConfig(type="regex", pattern=r"user=(?P<user>\S+) city=(?P<city>\S+)")

        fields, _ = parse(setting, ["é user=jösé city=Zürich", "\ufffd user=\ufffd city=x"])

        assert {"user": "jösé", "city": "Zürich"} == fields[0]
        assert {"user": "\ufffd", "city": "x"} == fields[1]

    @pytest.mark.parametrize(
        ("text", "expected"),
        [("1", 1), ("-2", -2), ("x", "x"), ("1.5", "1.5"), ("9" * 40, "9" * 40)],
    )
    def test_int_cast(self, text: str, expected: object) -> None:
        from kubelogs.parsing.regex import cast_value

        assert expected == cast_value(text, "int")
