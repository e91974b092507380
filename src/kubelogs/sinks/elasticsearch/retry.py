"""What to do with a bulk response: retry semantics as types, not string matching.

Whole request (`classify_response`):

- ``200`` -> the body is split per item (`classify_item`);
- refused, reset, timeout, ``429``, ``5xx`` -> `RetryableError`: the same documents are
  sent again after a jittered backoff, without end (the sources are held back by
  backpressure meanwhile, so nothing is lost and the checkpoints do not move);
- any other status (``401``/``403``: credentials; ``404``: a wrong path prefix; ``413``:
  `bulk.max_bytes` above the cluster's limit) is a problem of the deployment, not of
  the documents: also retried, as a `RetryableError` with ``permanent_cause`` set so that
  it is logged as an error. Dead-lettering them would empty the stream into the DLQ.
  A ``413`` is the exception: the sink splits the request in halves and sends those.

Per item (a document inside a ``200`` response):

- ``200``/``201`` -> `Indexed`; ``409`` on ``create`` -> `Indexed` (``duplicate``: it is
  there already, from an earlier attempt or before a crash);
- ``429``, ``5xx``, ``es_rejected_execution_exception``, and ``cluster_block_exception``
  (an index made read-only by a full disk) -> `Retry`;
- any other ``4xx`` (``mapper_parsing_exception``, ``document_parsing_exception``,
  ``illegal_argument_exception``, an invalid index name) -> `DeadLetter` with the reason:
  sending it again cannot succeed until someone changes the mapping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ERROR_REASON_MAX = 1000
"""Characters of an error reason kept (in logs and the DLQ): the reason can quote the
document's content, and a log line or DLQ entry per document must stay small."""
ERROR_BODY_MAX = 256
"""Characters of a non-bulk error response quoted in a log line (the body can echo a
request, and headers never appear): enough for Elasticsearch's error type and reason."""

_RETRY_TYPES = frozenset(
    {
        "es_rejected_execution_exception",
        "rejected_execution_exception",
        "cluster_block_exception",
        "unavailable_shards_exception",
        "node_not_connected_exception",
        "process_cluster_event_timeout_exception",
        "circuit_breaking_exception",
    }
)


class RetryableError(Exception):
    """The whole request failed; send the same documents again after a backoff."""

    def __init__(self, reason: str, *, status: int | None = None, permanent_cause: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.permanent_cause = permanent_cause
        """A deployment problem (credentials, path, size limit) rather than a passing
        one: logged as an error; still retried, since dropping the data is worse."""


@dataclass(frozen=True, slots=True)
class Indexed:
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Retry:
    status: int
    error_type: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    status: int
    error_type: str
    reason: str


ItemOutcome = Indexed | Retry | DeadLetter


def classify_response(status: int, body: bytes) -> None:
    """Raise `RetryableError` unless `status` is a bulk response worth reading."""
    if status == 200:
        return
    detail = body[:ERROR_BODY_MAX].decode("utf-8", "replace").replace("\n", " ")
    if status == 429 or status >= 500:
        raise RetryableError(f"HTTP {status}: {detail}", status=status)
    hint = {
        401: "authentication failed; check `auth`",
        403: "not permitted to write; check the user's privileges",
        404: "no _bulk endpoint at this URL; check `hosts` (path prefix?)",
        413: "request too large for the cluster; lower `bulk.max_bytes`",
    }.get(status, "unexpected response")
    raise RetryableError(f"HTTP {status}: {hint}: {detail}", status=status, permanent_cause=True)


def classify_item(item: Any) -> ItemOutcome:
    """One entry of a bulk response's ``items`` (``{"create": {...}}``)."""
    if isinstance(item, dict) and len(item) == 1:
        (result,) = item.values()
    else:
        result = item
    if not isinstance(result, dict):
        return Retry(0, "malformed_item")
    status = result.get("status")
    if not isinstance(status, int):
        return Retry(0, "malformed_item")
    if status < 300:
        return Indexed()
    if status == 409:
        return Indexed(duplicate=True)
    error = result.get("error")
    error_type = ""
    reason = ""
    if isinstance(error, dict):
        error_type = str(error.get("type", ""))
        reason = str(error.get("reason", ""))
        caused = error.get("caused_by")
        if isinstance(caused, dict) and caused.get("reason"):
            reason = f"{reason} (caused by {caused.get('type', '')}: {caused.get('reason')})"
    elif error is not None:
        reason = str(error)
    if status == 429 or status >= 500 or error_type in _RETRY_TYPES:
        return Retry(status, error_type or f"http_{status}")
    return DeadLetter(status, error_type or f"http_{status}", reason[:ERROR_REASON_MAX])
