"""Everything kubelogs knows about Kubernetes; the only package that talks to the API server.

Layers, bottom up (each module's docstring says why it is shaped so):

- `paths` - log file name -> namespace/pod/uid/container/id (pure, no I/O);
- `document_meta` - pod metadata -> pre-encoded ECS / fluentd JSON members (pure);
- `resources`, `errors`, `connection`, `client` - the API objects we read, the error
  hierarchy, settings resolution (in-cluster, kubeconfig, explicit) and a list/watch
  client on aiohttp;
- `watch` - the reflector loop (LIST, WATCH, bookmarks, 410 relist, backoff);
- `metadata_cache` - pods by UID, grace period after deletion, persisted in data_dir;
- `pod_files` - the ``kubelogs.io/files`` annotation -> host globs via volume mounts;
- `pod_watcher` - one shared watcher per process (``cx.shared``), started and stopped by
  the components that use it.

This ``__init__`` imports nothing on purpose: the tailer imports `paths` on its hot
start-up path without pulling in aiohttp.
"""
