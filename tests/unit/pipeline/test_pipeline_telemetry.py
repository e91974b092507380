"""What the agent tells its operator: /metrics series and its own log lines.

Issue 10 items 4 and 5, observed from outside as a Prometheus scrape or a log collector
sees them: a source's sent events, zero series from the start, no `*_created` series,
the periodic summary line, and `--log-format json`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from support.agent import Agent, tail_config
from support.waiting import wait_for


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return str(r.read().decode())


def value(text: str, name: str, **labels: str) -> float | None:
    """The value of the first series of `name` whose labels include `labels`."""
    for m in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M):
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(m.group(2))
    return None


def write_lines(path: Path, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.writelines(f"line {i}\n" for i in range(n))


class TestMetrics:
    def test_a_source_sent_events_are_what_it_emitted(self, tmp_path: Path) -> None:
        """`sent_events_total` of a source grows with what it hands downstream."""
        logs = tmp_path / "logs" / "a.log"
        write_lines(logs, 250)
        cfg = tail_config(
            tmp_path, include=[str(logs)], out=tmp_path / "out.ndjson", source_type="file"
        )
        with Agent(cfg, tmp_path / "agent.log") as agent:
            port = agent.api_port
            sent_by_sink = "kubelogs_component_sent_events_total"
            wait_for(
                lambda: value(scrape(port), sent_by_sink, component_id="out") == 250,
                what="the sink to write every line",
            )

            text = scrape(port)
            assert 0 == agent.stop()

        received = value(text, "kubelogs_component_received_events_total", component_id="logs")
        sent = value(text, "kubelogs_component_sent_events_total", component_id="logs")
        expected = (250.0, 250.0)
        assert expected == (received, sent)

    def test_error_and_lost_byte_series_exist_at_zero_from_the_start(self, tmp_path: Path) -> None:
        """Alerts need a series before the first error; `*_created` series are gone."""
        cfg = tail_config(
            tmp_path,
            include=[str(tmp_path / "logs" / "*.log")],
            out=tmp_path / "out.ndjson",
            source_type="file",
        )
        with Agent(cfg, tmp_path / "agent.log") as agent:
            text = scrape(agent.api_port)
            assert 0 == agent.stop()

        errors = "kubelogs_component_errors_total"
        expected = [0.0, 0.0, 0.0]
        assert expected == [
            value(text, errors, component_id="logs"),
            value(text, errors, component_id="out"),
            value(text, "kubelogs_lost_bytes_total", component_id="logs"),
        ]
        assert "_created" not in text


class TestOperatorLogs:
    def test_periodic_summary_says_events_in_and_out_and_lag(self, tmp_path: Path) -> None:
        """Every `log.summary_interval`, one info line per interval with the counts."""
        logs = tmp_path / "logs" / "a.log"
        write_lines(logs, 40)
        cfg = tail_config(
            tmp_path,
            include=[str(logs)],
            out=tmp_path / "out.ndjson",
            source_type="file",
            extra_root={"log": {"summary_interval": "200ms"}},
        )
        pattern = re.compile(r"INFO .*last 0\.2s: logs in (\d+) out (\d+), out in \d+ out \d+; lag")
        with Agent(cfg, tmp_path / "agent.log") as agent:

            def counted() -> int:
                return sum(int(m.group(2)) for m in pattern.finditer(agent.stderr()))

            wait_for(lambda: counted() == 40, what="summaries adding up to the 40 lines")
            assert 0 == agent.stop()

    def test_log_format_json_flag_makes_every_line_json(self, tmp_path: Path) -> None:
        """`kubelogs run --log-format json`: a log collector can parse every line, and
        the summary carries its numbers as fields."""
        logs = tmp_path / "logs" / "a.log"
        write_lines(logs, 10)
        cfg = tail_config(
            tmp_path,
            include=[str(logs)],
            out=tmp_path / "out.ndjson",
            source_type="file",
            extra_root={"log": {"summary_interval": "100ms", "format": "console"}},
        )
        log_path = tmp_path / "agent.log"
        with (
            log_path.open("wb") as log,
            subprocess.Popen(
                [sys.executable, "-m", "kubelogs", "run", "-c", str(cfg), "--log-format", "json"],
                stdout=subprocess.DEVNULL,
                stderr=log,
            ) as proc,
        ):
            try:

                def summary_lines() -> list[dict[str, object]]:
                    docs = [json.loads(ln) for ln in log_path.read_text().splitlines()]
                    return [d for d in docs if "fields" in d]

                found = wait_for(summary_lines, what="a JSON summary line")
            finally:
                proc.terminate()
                proc.wait(60)

        lines = log_path.read_text().splitlines()
        assert lines
        assert all(json.loads(ln)["level"] in ("info", "warning") for ln in lines)
        fields = found[0]["fields"]
        assert isinstance(fields, dict)
        assert {"logs", "out"} == set(fields["components"])
