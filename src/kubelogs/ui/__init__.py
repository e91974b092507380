"""`kubelogs ui`: a log explorer in the browser over the local store or Elasticsearch.

`ui.server` serves the page (`ui/static`: plain JavaScript modules and CSS, no build
step) and a read-only JSON API; `ui.backend` answers it from the store, `ui.es_backend`
from a cluster; `ui.security` holds the token, the security headers and the Host check;
`ui.timerange` the range the page asks for.
"""
