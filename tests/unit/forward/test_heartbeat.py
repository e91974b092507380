"""The phi accrual detector and the heartbeat settings of the `forward` sink."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kubelogs.forward.heartbeat import PhiAccrualDetector
from kubelogs.sinks.forward import ForwardSinkConfig


def regular(interval: float, beats: int) -> tuple[PhiAccrualDetector, float]:
    d = PhiAccrualDetector(interval, 0.0)
    t = 0.0
    for _ in range(beats):
        t += interval
        d.heard(t)
    return d, t


def test_phi_grows_with_silence_relative_to_the_usual_gap() -> None:
    d, t = regular(1.0, 50)
    assert d.phi(t) == 0.0
    assert d.phi(t + 1.0) < 1.0  # one interval late: nothing to suspect
    assert d.phi(t + 30.0) < 16.0
    assert d.phi(t + 40.0) > 16.0  # about 37 intervals: Fluentd's default threshold
    # the same silence means more after fast heartbeats than after slow ones
    fast, tf = regular(0.1, 50)
    assert fast.phi(tf + 4.0) > 16.0


def test_irregular_answers_raise_the_bar() -> None:
    d = PhiAccrualDetector(1.0, 0.0)
    t = 0.0
    for gap in [1.0, 3.0] * 25:  # a lossy network: every other answer lost
        t += gap
        d.heard(t)
    steady, ts = regular(1.0, 50)
    assert d.phi(t + 10.0) < steady.phi(ts + 10.0)


def test_reset_forgets_history_and_counts_samples_anew() -> None:
    d, t = regular(1.0, 20)
    assert d.samples == 20
    d.reset(t + 100.0)
    assert d.samples == 0
    assert d.phi(t + 100.0) == 0.0


def test_heartbeat_config_defaults_off_and_validates() -> None:
    base = {"type": "forward", "inputs": ["x"], "servers": ["agg:24224"]}
    cfg = ForwardSinkConfig.model_validate(base)
    assert "none" == cfg.heartbeat.type
    cfg = ForwardSinkConfig.model_validate(
        {**base, "heartbeat": {"type": "udp", "interval": "500ms", "hard_timeout": "30s"}}
    )
    assert (0.5, 30.0, 16.0, 10) == (
        cfg.heartbeat.interval,
        cfg.heartbeat.hard_timeout,
        cfg.heartbeat.phi_threshold,
        cfg.heartbeat.recover_samples,
    )
    with pytest.raises(ValidationError, match=r"heartbeat\.type"):
        ForwardSinkConfig.model_validate({**base, "heartbeat": {"type": "tcp"}})
    with pytest.raises(ValidationError, match="interval"):
        ForwardSinkConfig.model_validate({**base, "heartbeat": {"type": "udp", "interval": 0}})
