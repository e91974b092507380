"""Series of the network components (forward and http sources, forward sink) that the
per-component counters of `metrics.py` do not cover.

Registered once per `Metrics` (a process has one; tests build several), looked up
through a weak map as `transforms.redact` does for its counter.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from kubelogs.telemetry.metrics import Metrics


@dataclass(frozen=True)
class NetworkMetrics:
    idle_closed: Counter
    """Connections a source closed because the peer sent nothing for `idle_timeout`."""
    server_up: Gauge
    """A forward sink's view of each server: 1 in rotation, 0 taken out."""
    server_down: Counter
    """Times a forward sink took a server out of rotation, by reason."""


_BY_METRICS: weakref.WeakKeyDictionary[Metrics, NetworkMetrics] = weakref.WeakKeyDictionary()


def network_metrics(metrics: Metrics) -> NetworkMetrics:
    got = _BY_METRICS.get(metrics)
    if got is None:
        r = metrics.registry
        got = _BY_METRICS[metrics] = NetworkMetrics(
            idle_closed=Counter(
                "kubelogs_idle_connections_closed",
                "Connections a network source closed because the peer sent nothing for "
                "idle_timeout (and was owed no ack).",
                ["component_id"],
                registry=r,
            ),
            server_up=Gauge(
                "kubelogs_forward_server_up",
                "1 while a forward sink sends to this server, 0 while it is out of "
                "rotation (failed, or its heartbeats stopped).",
                ["component_id", "server"],
                registry=r,
            ),
            server_down=Counter(
                "kubelogs_forward_server_down",
                "Times a forward sink took a server out of rotation, by reason "
                "(heartbeat: its heartbeats stopped; failure: connect, auth, connection "
                "or ack timeout).",
                ["component_id", "server", "reason"],
                registry=r,
            ),
        )
    return got
