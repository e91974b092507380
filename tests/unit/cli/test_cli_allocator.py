"""`kubelogs run` tunes glibc malloc itself (issue 10 item 7).

The figure it buys is measured by bench/agent_bench.py (changelog.d/cli-ux.md); these
tests pin when the tuning is applied and that `run` applies it before anything else.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import pytest

from kubelogs.cli import allocator
from kubelogs.cli import run as run_command

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


class TestTune:
    @pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
    def test_glibc_accepts_both_thresholds(self) -> None:
        """With no malloc settings in the environment, both mallopt calls succeed."""
        assert allocator.tune({})

    @pytest.mark.parametrize(
        "env",
        [
            {"MALLOC_MMAP_THRESHOLD_": "131072"},
            {"MALLOC_TRIM_THRESHOLD_": "0"},
            {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"},
            {"KUBELOGS_MALLOC_TUNING": "off"},
        ],
    )
    def test_an_explicit_choice_in_the_environment_wins(self, env: dict[str, str]) -> None:
        """The user's own malloc settings, or the off switch, leave glibc as it is."""
        assert not allocator.tune(env)


class TestRunAppliesIt:
    def test_run_tunes_before_loading_the_config(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The pipeline's first allocations already use the tuned thresholds."""
        calls: list[str] = []
        monkeypatch.setattr(allocator, "tune", lambda: calls.append("tune") or True)
        args = argparse.Namespace(
            config=str(tmp_path / "absent.yaml"), log_format=None, log_level=None
        )

        with pytest.raises(Exception, match="no such config file"):
            run_command.run(args)

        assert ["tune"] == calls


class TestRunTunesTheCollector:
    def test_the_pipeline_runs_with_the_agent_gc_threshold(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The per-line objects of a parsed batch are in flight between stages; the
        pipeline runs with `AGENT_THRESHOLD` (pipeline.gc_pause) and the process's own
        thresholds come back when `run` returns."""
        import gc

        from kubelogs.pipeline.gc_pause import AGENT_THRESHOLD

        config = tmp_path / "kubelogs.yaml"
        config.write_text(
            f"data_dir: {tmp_path / 'data'}\n"
            f"sources:\n  in: {{type: file, paths: ['{tmp_path}/*.log']}}\n"
            "sinks:\n  out: {type: blackhole, inputs: [in]}\n"
        )
        seen: list[tuple[int, int, int]] = []

        async def serve(*args: object) -> int:
            seen.append(gc.get_threshold())
            return 0

        monkeypatch.setattr(run_command, "serve", serve)
        before = gc.get_threshold()
        args = argparse.Namespace(config=str(config), log_format=None, log_level=None)

        assert 0 == run_command.run(args)

        assert [AGENT_THRESHOLD] == seen
        assert before == gc.get_threshold()
