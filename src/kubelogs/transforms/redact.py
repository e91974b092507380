"""``redact``: mask secrets in messages and fields before they leave the node.

What is scanned: by default the message and every string value of the event - its
parsed fields (nested objects and lists included: a redact after a `parse` step must
mask the parsed copy of a secret too, and the JSON text of a message can hide one from
a scan of the message, as in ``https:\\/\\/user:pw@host``) and what its file shares
(the Kubernetes metadata, worked out once per file context). `fields` narrows that to a
list of fields (``[]``: the message only).

Built-in patterns (all on by default): ``bearer_token`` (``Authorization: Bearer ...``),
``basic_auth_url`` (the password of ``scheme://user:password@host``),
``aws_access_key`` (``AKIA...``/``ASIA...`` key ids), ``aws_secret_key`` (a 40-character
value after ``aws_secret_access_key``), ``jwt``, ``email``, ``credit_card`` (13-19
digits, spaces or dashes allowed, with a known card prefix and a valid Luhn checksum, so
ordinary ids and timestamps are left alone: written whole or in groups of four, or
Amex's 4-6-5, standing alone). User patterns (`custom`) are regexes whose
match (or its first group, when it has groups) is masked.

Replacement: ``[REDACTED]`` (`replacement`), or with ``mode: hash`` a keyed hash
``[HMAC:<16 hex>]`` (HMAC-SHA256 with `hash_key`, usually ``${REDACT_KEY}``): the same
secret gives the same mark, so lines can still be correlated, and without the key the
value cannot be recovered by guessing. The key is never logged.

Bounded work: built-in patterns are written for Python's `re` with bounded repetitions
and no nested variable quantifiers (linear in the text), each behind a substring test
that rules out most lines without running a regex; user patterns run on RE2
(`google-re2`), which is linear whatever the pattern, behind an RE2 search. A metric
counts what was masked, by pattern: ``kubelogs_redactions_total{component_id,pattern}``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import weakref
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Literal

import msgspec
from prometheus_client import Counter
from pydantic import Field, SecretStr, field_validator, model_validator

from kubelogs.config.base import BuildContext, TransformConfig
from kubelogs.config.registry import register
from kubelogs.pipeline.event import Batch, FileContext
from kubelogs.store.matcher import get_field
from kubelogs.telemetry.metrics import Metrics
from kubelogs.transforms.fields import decode_members, encode_members

Replace = Callable[[str], str]


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_CARD_PREFIXES = (
    "34",
    "37",
    "4",
    "51",
    "52",
    "53",
    "54",
    "55",
    "22",
    "23",
    "24",
    "25",
    "26",
    "27",
    "60",
    "65",
)


def _card(text: str, start: int, end: int) -> bool:
    """A card number: standing alone (not inside a longer word or number), 13-19
    digits with a card network's prefix, Luhn-valid."""
    if start > 0 and (text[start - 1].isalnum() or text[start - 1] in "-_"):
        return False
    if end < len(text) and (text[end].isalnum() or text[end] in "-_"):
        return False
    digits = "".join(c for c in text[start:end] if c.isdigit())
    return 13 <= len(digits) <= 19 and digits.startswith(_CARD_PREFIXES) and luhn_ok(digits)


@dataclass(frozen=True)
class Pattern:
    name: str
    regex: Any
    """A compiled pattern (`re` or RE2) with `search` and `finditer`, run per line."""
    anchors: tuple[str, ...] | None = None
    """Lower-case substrings of which every match holds one: only lines holding one
    are searched (found with `str.find` over the batch's text, at C speed)."""
    group: int = 0
    """The group to mask (0: the whole match)."""
    valid: Callable[[str, int, int], bool] | None = None
    shapes: tuple[str, ...] = ()
    """Instead of anchors: shapes every match holds, in the text with digits as ``0``
    and spaces and dashes as ``1`` (card numbers)."""
    exact_anchors: bool = False
    """The anchors are looked for as written, in the text itself (not lower-cased)."""
    scan: Any = None
    """For a user pattern: the regex that finds candidate lines in a batch's joined
    text (multi-line, so ``^`` and ``$`` hold at every text's start and end)."""

    def apply(self, text: str, replace: Replace) -> tuple[str, int]:
        """`text` with the secrets masked, and how many there were."""
        out: list[str] = []
        pos = 0
        count = 0
        for m in self.regex.finditer(text):
            start, end = m.span(self.group)
            if start < 0 or start < pos:
                continue
            if self.valid is not None and not self.valid(text, start, end):
                continue
            out.append(text[pos:start])
            out.append(replace(text[start:end]))
            pos = end
            count += 1
        if not count:
            return text, 0
        out.append(text[pos:])
        return "".join(out), count


_DIGITS = str.maketrans(
    {
        i: ("0" if chr(i).isdigit() else "1" if chr(i) in " -" else "x")
        for i in range(128)
        if i != 10
    }
)
"""Digits -> ``0``, spaces and dashes -> ``1``, other ASCII but the newline -> ``x``."""

BUILTIN: dict[str, Pattern] = {
    p.name: p
    for p in (
        Pattern(
            "bearer_token",
            re.compile(r"(?i)\bbearer[ \t]{1,10}([A-Za-z0-9\-._~+/]{8,4096}=*)"),
            ("bearer",),
            group=1,
        ),
        Pattern(
            "basic_auth_url",
            re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{0,30}://[^\s:/@]{1,128}:([^\s/@]{1,128})@"),
            ("://",),
            group=1,
        ),
        Pattern(
            "aws_access_key",
            re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b"),
            ("IA", "ACCA"),
            exact_anchors=True,
        ),
        Pattern(
            "aws_secret_key",
            re.compile(
                r"(?i)aws_?secret_?(?:access_?)?key[\"']?[ \t]{0,5}[:=][ \t]{0,5}[\"']?"
                r"([A-Za-z0-9/+=]{40})"
            ),
            ("secret",),
            group=1,
        ),
        Pattern(
            "jwt",
            re.compile(r"\beyJ[A-Za-z0-9_-]{4,4096}\.[A-Za-z0-9_-]{4,8192}\.[A-Za-z0-9_-]{0,4096}"),
            ("eyj",),
        ),
        Pattern(
            "email",
            re.compile(
                r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}"
                r"(?:\.[A-Za-z0-9-]{1,63}){1,8}"
            ),
            ("@",),
        ),
        Pattern(
            "credit_card",
            # contiguous, in groups of four (16-19 digits), or Amex's 4-6-5
            re.compile(r"\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}|\d{4}[ -]\d{6}[ -]\d{5}"),
            valid=_card,
            shapes=("0" * 13, "0000100001000010", "00001000000100000"),
        ),
    )
}


def compile_custom(name: str, pattern: str) -> Pattern:
    """A user pattern on RE2; `ValueError` naming the problem when RE2 refuses it."""
    import re2

    options = re2.Options()
    options.log_errors = False
    options.never_nl = True  # a match never spans two lines of a batch's joined text
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(
            f"custom.{name}: not a valid RE2 regex ({reason}); RE2 has no backreferences "
            "or lookaround"
        ) from None
    scan = re2.compile("(?m)" + pattern, options)
    return Pattern(name, compiled, None, group=1 if compiled.groups else 0, scan=scan)


def _line_of(starts: list[int], pos: int) -> int:
    return bisect_right(starts, pos) - 1


def candidate_lines(pattern: Pattern, text: str, low: str | None, starts: list[int]) -> list[int]:
    """The lines (ascending) of a batch's joined `text` that may hold a match.

    `low` is `text` lower-cased when that kept every offset (ASCII, mostly), else None
    (then anchors are looked for line by line)."""
    found: set[int] = set()
    n = len(starts)
    if pattern.anchors is not None:
        if pattern.exact_anchors:
            low = text
        if low is None:
            ends = [*(s - 1 for s in starts[1:]), len(text)]
            lines = [text[a:b] for a, b in zip(starts, ends, strict=True)]
            return [
                i for i, line in enumerate(lines) if any(a in line.lower() for a in pattern.anchors)
            ]
        for anchor in pattern.anchors:
            pos = low.find(anchor)
            while pos != -1:
                line = _line_of(starts, pos)
                found.add(line)
                if line + 1 >= n:
                    break
                pos = low.find(anchor, starts[line + 1])
        return sorted(found)
    if pattern.shapes:
        marks = text.translate(_DIGITS)
        for shape in pattern.shapes:
            pos = marks.find(shape)
            while pos != -1:
                line = _line_of(starts, pos)
                found.add(line)
                if line + 1 >= n:
                    break
                pos = marks.find(shape, starts[line + 1])
        return sorted(found)
    # a user pattern (RE2, never across lines): one linear scan of the whole batch
    for m in (pattern.scan or pattern.regex).finditer(text):
        found.add(_line_of(starts, m.start()))
    return sorted(found)


@register(
    "transform",
    "redact",
    "Mask secrets (tokens, keys, JWTs, emails, card numbers, your regexes) in messages and fields.",
)
class RedactConfig(TransformConfig):
    """Replace secrets with ``[REDACTED]`` or a keyed hash."""

    type: Literal["redact"]
    patterns: list[str] = Field(default_factory=lambda: list(BUILTIN))
    """Built-in patterns to apply; default: all of them."""
    custom: dict[str, str] = Field(default_factory=dict)
    """``name: regex`` (RE2 syntax); the match, or its first group, is masked."""
    message: bool = True
    """Scan the message."""
    fields: list[str] | None = None
    """The fields to scan besides the message. Unset (the default): every string value
    of the event - its parsed fields, nested objects and lists included, and what its
    file shares (the Kubernetes metadata, static fields). A list narrows it to those
    fields, by their document names (parsed or metadata); ``[]``: the message only."""
    mode: Literal["mask", "hash"] = "mask"
    replacement: str = "[REDACTED]"
    """What replaces a secret with ``mode: mask``."""
    hash_key: SecretStr | None = None
    """HMAC key for ``mode: hash`` (use ``${VAR}``); never logged."""

    @field_validator("patterns")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [p for p in value if p not in BUILTIN]
        if unknown:
            raise ValueError(
                f"unknown pattern {unknown[0]!r}; built-in patterns: {', '.join(BUILTIN)}"
            )
        return value

    @field_validator("custom")
    @classmethod
    def _compiles(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pattern in value.items():
            if name in BUILTIN:
                raise ValueError(f"custom.{name}: the name of a built-in pattern")
            compile_custom(name, pattern)
        return value

    @model_validator(mode="after")
    def _key_for_hash(self) -> RedactConfig:
        if self.mode == "hash" and not (self.hash_key and self.hash_key.get_secret_value()):
            raise ValueError("mode hash needs hash_key (for example hash_key: ${REDACT_KEY})")
        return self

    def build(self, cx: BuildContext) -> RedactTransform:
        patterns = [BUILTIN[p] for p in self.patterns]
        patterns += [compile_custom(n, p) for n, p in self.custom.items()]
        key = self.hash_key.get_secret_value().encode() if self.hash_key else None
        replace = (
            hmac_replacer(key) if self.mode == "hash" and key else (lambda _: self.replacement)
        )
        counter = redaction_counter(cx.metrics)
        return RedactTransform(
            patterns,
            replace,
            message=self.message,
            fields=self.fields,
            count=lambda name, n: counter.labels(cx.component_id, name).inc(n),
        )


def hmac_replacer(key: bytes) -> Replace:
    def replace(secret: str) -> str:
        digest = hmac.new(key, secret.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return f"[HMAC:{digest.hexdigest()[:16]}]"

    return replace


_COUNTERS: weakref.WeakKeyDictionary[Metrics, Counter] = weakref.WeakKeyDictionary()


def redaction_counter(metrics: Metrics) -> Counter:
    """One counter per metrics registry, shared by every redact transform."""
    counter = _COUNTERS.get(metrics)
    if counter is None:
        counter = _COUNTERS[metrics] = Counter(
            "kubelogs_redactions",
            "Secrets masked by redact transforms, by pattern.",
            ["component_id", "pattern"],
            registry=metrics.registry,
        )
    return counter


class RedactTransform:
    """See the module docstring; `fields` None scans every string value of an event."""

    def __init__(
        self,
        patterns: Sequence[Pattern],
        replace: Replace,
        *,
        message: bool = True,
        fields: Sequence[str] | None = None,
        count: Callable[[str, int], None] | None = None,
    ) -> None:
        self.patterns = list(patterns)
        self.replace = replace
        self.message = message
        self.fields = None if fields is None else list(fields)
        self._count = count
        self.masked: dict[str, int] = {}
        self._contexts: dict[int, tuple[FileContext, FileContext]] = {}
        self._prefilter = all(p.anchors is not None or p.shapes for p in self.patterns)
        """Every pattern is found by substrings that JSON leaves as they are."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def redact(self, text: str) -> str:
        """`text` with every pattern's secrets masked (one value: a field)."""
        return self.redact_all([text])[0]

    def redact_all(self, texts: list[str], *, counted: bool = True) -> list[str]:
        """`texts` masked; the same list when nothing was found. The texts are joined
        once so that each pattern finds its candidate lines with a few C-level scans
        of the whole batch; only those lines are searched with the pattern. With
        `counted` false, what is masked is not counted (a second copy of values that
        were)."""
        if not texts:
            return texts
        joined = "\n".join(texts)
        low: str | None = joined.lower()
        if low is not None and len(low) != len(joined):
            low = None  # a character whose lower case is longer: offsets would shift
        starts = list(accumulate(map((1).__add__, map(len, texts[:-1])), initial=0))
        out = texts
        for p in self.patterns:
            lines = candidate_lines(p, joined, low, starts)
            for i in lines:
                new, n = p.apply(out[i], self.replace)
                if n:
                    if out is texts:
                        out = list(texts)
                    out[i] = new
                    if not counted:
                        continue
                    self.masked[p.name] = self.masked.get(p.name, 0) + n
                    if self._count is not None:
                        self._count(p.name, n)
        return out

    def process(self, batch: Batch) -> Batch | None:
        changes: dict[str, Any] = {}
        if self.message:
            redacted = self.redact_all(batch.messages)
            if redacted is not batch.messages:
                changes["messages"] = redacted
        if batch.fields and self.fields != []:
            fields = (
                self._redact_every_string(batch.fields)
                if self.fields is None
                else self._redact_listed(batch.fields, self.fields)
            )
            if fields is not None:
                changes["fields"] = fields
        if self.fields != []:
            ctx = self._context(batch.ctx)
            if ctx is not batch.ctx:
                changes["ctx"] = ctx
        return batch.derive(**changes) if changes else batch

    # -- parsed fields ------------------------------------------------------------------

    def _redact_every_string(
        self, fields: dict[int, dict[str, Any]]
    ) -> dict[int, dict[str, Any]] | None:
        """Every string value of every row's fields, scanned together as one batch
        text (`redact_all`); only rows with a secret are rebuilt (new dicts: the
        batch's are shared).

        Cost: with built-in patterns only, the rows' fields are first encoded as JSON
        lines in one C call and the patterns' substring scans run over that text: every
        built-in pattern's anchors and digit shapes hold no character JSON escapes, so
        a string that can match shows them in its encoding too. Only the rows found
        there are walked in Python. A user pattern can hold anything (quotes, ``^``), so
        with one, every row is walked."""
        rows = [row for row, own in fields.items() if own]
        if self._prefilter and rows:
            try:
                text = _encode_lines([fields[row] for row in rows]).decode()
            except (TypeError, ValueError, UnicodeDecodeError):
                pass  # not JSON-encodable (user code put something else there): walk all
            else:
                rows = [rows[i] for i in self._candidates(text, len(rows))]
        strings: list[str] = []
        bounds: list[tuple[int, int]] = []
        for row in rows:
            start = len(strings)
            _strings(fields[row], strings)
            bounds.append((row, start))
        if not strings:
            return None
        redacted = self.redact_all(strings)
        if redacted is strings:
            return None
        out = dict(fields)
        ends = [b[1] for b in bounds[1:]] + [len(strings)]
        for (row, start), end in zip(bounds, ends, strict=True):
            if any(redacted[k] is not strings[k] for k in range(start, end)):
                out[row] = _replaced(fields[row], iter(redacted[start:end]))
        return out

    def _redact_listed(
        self, fields: dict[int, dict[str, Any]], paths: list[str]
    ) -> dict[int, dict[str, Any]] | None:
        """The string values at `paths` (found as `kubelogs search` finds them)."""
        strings: list[str] = []
        where: list[tuple[int, str]] = []
        for row, own in fields.items():
            if not own:
                continue
            for path in paths:
                value = get_field(own, path)
                if isinstance(value, str):
                    strings.append(value)
                    where.append((row, path))
        if not strings:
            return None
        redacted = self.redact_all(strings)
        if redacted is strings:
            return None
        out = dict(fields)
        for (row, path), old, new in zip(where, strings, redacted, strict=True):
            if new is not old:
                replaced = replace_found(out[row], path, new)
                if replaced is not None:
                    out[row] = replaced
        return out

    def _candidates(self, text: str, n: int) -> list[int]:
        """The lines of `text` (`n` lines, ``\n``-separated) where a pattern may match."""
        lowered = text.lower()
        low = lowered if len(lowered) == len(text) else None  # else offsets would shift
        lengths = map(len, text.split("\n", n - 1)[:-1])
        starts = list(accumulate(map((1).__add__, lengths), initial=0))
        found: set[int] = set()
        for p in self.patterns:
            found.update(candidate_lines(p, text, low, starts))
        return sorted(found)

    # -- what the file shares -----------------------------------------------------------

    def _context(self, ctx: FileContext) -> FileContext:
        """`ctx` with secrets in its metadata masked, worked out once per file context
        (so a secret there is counted once per file, not per event)."""
        hit = self._contexts.get(id(ctx))
        if hit is not None and hit[0] is ctx:
            return hit[1]
        new = ctx
        if ctx.meta_ecs or ctx.meta_fluentd:
            ecs = decode_members(ctx.meta_ecs)
            fluentd = decode_members(ctx.meta_fluentd)
            if self.fields is None:
                # Both layouts hold the same values: masks are counted in one.
                ecs2 = self._every_string_of(ecs)
                fluentd2 = self._every_string_of(fluentd, counted=False)
            else:
                ecs2, fluentd2 = self._listed_of(ecs, fluentd, self.fields)
            if ecs2 is not ecs or fluentd2 is not fluentd:
                new = ctx.with_meta(
                    meta_ecs=encode_members(ecs2), meta_fluentd=encode_members(fluentd2)
                )
        if len(self._contexts) >= _MAX_CONTEXTS:
            del self._contexts[next(iter(self._contexts))]
        self._contexts[id(ctx)] = (ctx, new)
        return new

    def _every_string_of(self, doc: dict[str, Any], *, counted: bool = True) -> dict[str, Any]:
        strings: list[str] = []
        _strings(doc, strings)
        redacted = self.redact_all(strings, counted=counted)
        return doc if redacted is strings else _replaced(doc, iter(redacted))

    def _listed_of(
        self, ecs: dict[str, Any], fluentd: dict[str, Any], paths: list[str]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The listed (ECS) paths masked; in the fluentd layout, which names the same
        values otherwise, every string equal to a masked one."""
        masked: dict[str, str] = {}
        for path in paths:
            value = get_field(ecs, path)
            if not isinstance(value, str):
                continue
            new = self.redact(value)
            if new is not value:
                masked[value] = new
                ecs = replace_found(ecs, path, new) or ecs
        if masked and fluentd:
            strings: list[str] = []
            _strings(fluentd, strings)
            fluentd = _replaced(fluentd, iter([masked.get(v, v) for v in strings]))
        return ecs, fluentd


_MAX_CONTEXTS = 4096
_encode_lines = msgspec.json.Encoder().encode_lines


def _strings(value: dict[str, Any] | list[Any], out: list[str]) -> None:
    """Append every string value in `value` (nested dicts and lists), depth first."""
    for v in value.values() if isinstance(value, dict) else value:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict | list):
            _strings(v, out)


def _replaced(value: Any, new: Iterator[str]) -> Any:
    """A copy of `value` with its strings, in `_strings` order, taken from `new`."""
    if isinstance(value, dict):
        return {k: _replaced(v, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replaced(v, new) for v in value]
    if isinstance(value, str):
        return next(new)
    return value


def replace_found(d: dict[str, Any], path: str, new: Any) -> dict[str, Any] | None:
    """A copy of `d` with the value at `path` replaced where `store.matcher.get_field`
    finds it (a literal dotted key first, then nested objects); None when it has none."""
    if path in d:
        out = dict(d)
        out[path] = new
        return out
    head, dot, rest = path.partition(".")
    while dot:
        inner = d.get(head)
        if isinstance(inner, dict):
            replaced = replace_found(inner, rest, new)
            if replaced is not None:
                out = dict(d)
                out[head] = replaced
                return out
        nxt, dot, rest = rest.partition(".")
        head = f"{head}.{nxt}"
    return None
