"""How sinks wait before trying a failed write again.

A sink that cannot write (a full disk, an I/O error) keeps its batches unacknowledged and
tries again: the sources stop reading meanwhile (backpressure) and nothing is lost. The
delay grows exponentially so that a lasting fault costs little, with jitter so that
several sinks failing on the same disk do not retry in lockstep, and is capped so that
work resumes soon after the fault is gone.
"""

from __future__ import annotations

import random

_jitter = random.Random()
"""Jitter from a generator of our own: the global `random` state belongs to the
application (and to test frameworks that seed it), and threads that share it race."""


class Backoff:
    """Jittered exponential delays: ``uniform(0.5, 1) * min(maximum, initial * 2**n)``
    for the n-th consecutive failure; `reset` after a success."""

    def __init__(self, initial: float = 0.5, maximum: float = 10.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._attempt = 0

    @property
    def failures(self) -> int:
        """Consecutive failures since the last success."""
        return self._attempt

    def reset(self) -> None:
        self._attempt = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * 2.0 ** min(self._attempt, 32))
        self._attempt += 1
        return delay * _jitter.uniform(0.5, 1.0)
