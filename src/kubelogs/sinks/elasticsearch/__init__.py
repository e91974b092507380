"""The `elasticsearch` sink (also OpenSearch), one module per concern:

- `config`: the config model (the user contract, DESIGN.md section 4);
- `encoder`: batch -> ``create`` actions and documents, index names (pure);
- `request_builder`: items -> ``_bulk`` bodies, item -> batch ack bookkeeping;
- `retry`: what a response means (retry, dead-letter, done), as types;
- `service`: HTTP (hosts in rotation, auth, TLS) behind a one-method seam;
- `health`: server flavour, health check, index template;
- `sink`: the run loop.

Only this package knows the bulk API (STYLE.md section 1).
"""

from kubelogs.sinks.elasticsearch.config import ElasticsearchConfig

__all__ = ["ElasticsearchConfig"]
