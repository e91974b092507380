"""Fluentd Forward Protocol v1: the codec (`protocol`), the authentication handshake
(`handshake`), TLS settings (`tls`) and the connection-level server (`server`) shared by
the `forward` source and sink (and the `ForwardHandler` logging handler)."""
