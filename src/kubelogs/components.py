"""Every built-in component type, imported here so it registers: the one list to grep."""

from kubelogs.sinks import blackhole, elasticsearch, file, local, stdout
from kubelogs.sources import file as file_source
from kubelogs.sources import kubernetes_logs
from kubelogs.transforms import kubernetes_metadata
from kubelogs.transforms import parse as parse_transform

__all__ = [
    "blackhole",
    "elasticsearch",
    "file",
    "file_source",
    "kubernetes_logs",
    "kubernetes_metadata",
    "local",
    "parse_transform",
    "stdout",
]
