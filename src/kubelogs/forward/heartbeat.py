"""Heartbeats of the `forward` sink: which servers are alive, as Fluentd's out_forward
decides it (``heartbeat_type udp``, ``phi_failure_detector``, ``hard_timeout``,
``recover_sample_size``).

Why: a server that hangs or is cut off without a reset (a node lost, a partition) is
otherwise noticed only when an ack times out (`ack_timeout`, a minute), and a lane that
has nothing to send never notices. Every `interval` the monitor sends one UDP datagram
to each server's port - our `forward` source and Fluentd's in_forward answer each one -
and feeds the answers' arrival times to a phi accrual failure detector per server.

The detector (Hayashibara et al., 2004, with the exponential approximation Cassandra and
Fluentd use): from the mean gap between recent answers, phi = elapsed / (mean * ln 10)
is the -log10 of the probability that an answer still comes after `elapsed` seconds of
silence. Above `phi_threshold` (16, Fluentd's default: about 37 regular intervals of
silence) - or after `hard_timeout` without any answer - the server is taken out of
rotation; it comes back after `recover_samples` answers in a row (Fluentd: 10), so one
stray datagram does not bring back a flapping server.

Resource handling: one connected UDP endpoint per server, made again after an error
(a name that does not resolve yet, a network down); all closed by `close`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field

from kubelogs.config.base import StrictModel
from kubelogs.config.units import Duration

log = logging.getLogger("kubelogs.sinks.forward")

_LN10 = math.log(10.0)
_WINDOW = 100
"""Recent gaps the mean is taken over: long enough to smooth jitter, short enough to
follow a change of network."""


_RECOVER_GAP = 3
"""Intervals of silence that restart the count of a server's recovery."""


class HeartbeatConfig(StrictModel):
    """Fluentd's out_forward heartbeat settings, under one key."""

    type: Literal["none", "udp"] = "none"
    """``udp``: send a datagram to each server's port every `interval` and take a server
    whose answers stop out of rotation (Fluentd's ``heartbeat_type udp``). ``none`` (the
    default): a server is taken out only when it fails (connect error, refused
    handshake, lost connection, `ack_timeout`) - the right choice for servers that do
    not answer UDP (Fluent Bit) or whose UDP port is not reachable (a Kubernetes
    Service must list the port for UDP as well as TCP)."""
    interval: Duration = Field(1.0, gt=0)
    """Seconds between heartbeats (Fluentd: ``heartbeat_interval``)."""
    phi_failure_detector: bool = True
    """Use the phi accrual detector; off, only `hard_timeout` takes a server out."""
    phi_threshold: float = Field(16.0, gt=0)
    """The suspicion level at which a silent server is taken out; lower reacts sooner
    and risks taking out a server whose answers were merely late (phi 16 after about 37
    intervals of silence when answers were regular, phi 4 after about 9)."""
    hard_timeout: Duration = Field(60.0, gt=0)
    """Seconds without an answer after which a server is out whatever phi says."""
    recover_samples: int = Field(10, ge=1)
    """Answers in a row (no silence longer than three intervals) that bring a server
    back into rotation (Fluentd: ``recover_sample_size``)."""


class PhiAccrualDetector:
    """Suspicion that a peer is gone, from the arrival times of its heartbeats."""

    def __init__(self, interval: float, now: float) -> None:
        self.interval = interval
        self.last = now
        self._gaps: collections.deque[float] = collections.deque([interval], maxlen=_WINDOW)
        self.samples = 0
        """Heartbeats heard since the last `reset`."""

    def heard(self, now: float) -> None:
        gap = now - self.last
        if self.samples and gap > 0:
            self._gaps.append(gap)
        self.last = now
        self.samples += 1

    def reset(self, now: float) -> None:
        """Forget the history (a server taken out starts counting its recovery anew)."""
        self._gaps.clear()
        self._gaps.append(self.interval)
        self.last = now
        self.samples = 0

    def silence(self, now: float) -> float:
        return now - self.last

    def phi(self, now: float) -> float:
        mean = max(sum(self._gaps) / len(self._gaps), 1e-3)
        return max(0.0, now - self.last) / (mean * _LN10)


class _Answers(asyncio.DatagramProtocol):
    def __init__(self, on_answer: Callable[[], None]) -> None:
        self._on_answer = on_answer

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._on_answer()

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable and the like: simply no answer


class Peer:
    """One server as the monitor sees it."""

    def __init__(self, name: str, host: str, port: int, interval: float, now: float) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.alive = True
        self.detector = PhiAccrualDetector(interval, now)
        self.transport: asyncio.DatagramTransport | None = None


Transition = Callable[[Peer, bool, str], None]
"""(peer, alive, why) -> None: a peer left or rejoined the rotation."""


class HeartbeatMonitor:
    """Sends heartbeats, listens for answers, reports peers leaving and rejoining."""

    def __init__(
        self, config: HeartbeatConfig, peers: list[tuple[str, str, int]], on_change: Transition
    ) -> None:
        self.config = config
        self._on_change = on_change
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self.peers = [Peer(n, h, p, config.interval, now) for n, h, p in peers]

    async def run(self) -> None:
        """Until cancelled: every interval, judge each peer and send it a heartbeat."""
        try:
            while True:
                for peer in self.peers:
                    self._judge(peer)
                # at once: one server's slow name lookup must not silence the others
                await asyncio.gather(*(self._send(peer) for peer in self.peers))
                await asyncio.sleep(self.config.interval)
        finally:
            self.close()

    def close(self) -> None:
        for peer in self.peers:
            if peer.transport is not None:
                peer.transport.close()
                peer.transport = None

    async def _send(self, peer: Peer) -> None:
        if peer.transport is None or peer.transport.is_closing():
            try:
                peer.transport, _ = await self._loop.create_datagram_endpoint(
                    lambda: _Answers(lambda: self._answered(peer)),
                    remote_addr=(peer.host, peer.port),
                )
            except OSError:
                return  # not resolvable or no route now: counts as silence
        with contextlib.suppress(OSError):
            peer.transport.sendto(b"\x00")

    def _answered(self, peer: Peer) -> None:
        now = self._loop.time()
        peer.detector.heard(now)
        if not peer.alive and peer.detector.samples >= self.config.recover_samples:
            peer.alive = True
            self._on_change(peer, True, f"answered {peer.detector.samples} heartbeats")

    def _judge(self, peer: Peer) -> None:
        cfg = self.config
        now = self._loop.time()
        silence = peer.detector.silence(now)
        if not peer.alive:
            if peer.detector.samples and silence > _RECOVER_GAP * cfg.interval:
                peer.detector.reset(now)  # answers must come in a row to bring it back
            return
        why = ""
        if silence > cfg.hard_timeout:
            why = f"no heartbeat answer for {silence:.1f}s (hard_timeout {cfg.hard_timeout:g}s)"
        elif cfg.phi_failure_detector:
            phi = peer.detector.phi(now)
            if phi > cfg.phi_threshold:
                why = (
                    f"no heartbeat answer for {silence:.1f}s "
                    f"(phi {phi:.1f} > phi_threshold {cfg.phi_threshold:g})"
                )
        if why:
            peer.alive = False
            peer.detector.reset(now)
            if peer.transport is not None:
                peer.transport.close()  # a new endpoint: the address may have moved
                peer.transport = None
            self._on_change(peer, False, why)
