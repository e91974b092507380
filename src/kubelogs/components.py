"""Every built-in component type, imported here so it registers: the one list to grep."""

from kubelogs.sinks import blackhole, elasticsearch, file, local, stdout
from kubelogs.sinks import forward as forward_sink
from kubelogs.sinks import kafka as kafka_sink
from kubelogs.sources import file as file_source
from kubelogs.sources import forward as forward_source
from kubelogs.sources import http as http_source
from kubelogs.sources import kafka as kafka_source
from kubelogs.sources import kubernetes_logs
from kubelogs.transforms import filter as filter_transform
from kubelogs.transforms import kubernetes_metadata, modify, redact, route, sample, throttle
from kubelogs.transforms import parse as parse_transform
from kubelogs.transforms import python as python_transform

__all__ = [
    "blackhole",
    "elasticsearch",
    "file",
    "file_source",
    "filter_transform",
    "forward_sink",
    "forward_source",
    "http_source",
    "kafka_sink",
    "kafka_source",
    "kubernetes_logs",
    "kubernetes_metadata",
    "local",
    "modify",
    "parse_transform",
    "python_transform",
    "redact",
    "route",
    "sample",
    "stdout",
    "throttle",
]
