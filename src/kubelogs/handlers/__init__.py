"""`logging` handlers for applications that push their logs to kubelogs (or Fluentd).

`ForwardHandler` speaks the Fluentd Forward protocol to a kubelogs aggregator's
`forward` source (or to Fluentd / Fluent Bit): non-blocking `emit`, a bounded queue,
a background thread that reconnects, and `flush`/`close` that wait for acks.
"""

from kubelogs.handlers.forward import ForwardHandler as ForwardHandler

__all__ = ["ForwardHandler"]
from kubelogs.handlers.http import HttpHandler as HttpHandler
