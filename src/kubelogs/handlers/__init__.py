"""`logging` handlers for applications that push their logs to kubelogs (or Fluentd).

`ForwardHandler` speaks the Fluentd Forward protocol to a kubelogs aggregator's
`forward` source (or to Fluentd / Fluent Bit): non-blocking `emit`, a bounded queue,
a background thread that reconnects, and `flush`/`close` that wait for acks.
`HttpHandler` posts to an `http` source. One module per handler.
"""

from kubelogs.handlers.forward import ForwardHandler as ForwardHandler
from kubelogs.handlers.http import HttpHandler as HttpHandler

__all__ = ["ForwardHandler", "HttpHandler"]
