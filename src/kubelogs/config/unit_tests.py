"""The `tests:` key: unit tests of transforms, run by `kubelogs test` (as `vector test`).

Kept in the config file beside the components they test, so a change to a transform and
the proof that it still does what the README says travel together. `kubelogs run`
validates them with the rest of the file and otherwise ignores them.

```yaml
tests:
  - name: errors go to the errors output
    insert_at: by_level              # the transform that receives the inputs
    inputs:                          # an event (document fields) or a raw line (a string)
      - {message: "boom", log: {level: error}}
      - "just a line"
    outputs:
      - extract_from: by_level.errors      # a transform, or a named output of one
        events:                            # exactly these events, in this order;
          - {message: boom}                # each names only the fields it checks
    no_output_from: [by_level._unmatched]  # outputs that must stay empty
```
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import Field, field_validator, model_validator

from kubelogs.config.base import StrictModel


class ExpectedOutput(StrictModel):
    extract_from: str
    """The component (or named output, `route.errors`) whose events are checked."""
    events: list[dict[str, Any]] = Field(min_length=1)
    """The events expected there, in order and exactly as many. Each mapping names the
    fields to check (nested, or as dotted keys: `kubernetes.namespace: web`); fields it
    does not name are not checked. `null` checks that a field is absent."""

    @field_validator("events", mode="before")
    @classmethod
    def _times_as_text(cls, value: Any) -> Any:
        return _yaml_times_as_text(value)


class UnitTest(StrictModel):
    name: str
    """Shown in the report."""
    insert_at: str
    """The transform the inputs are sent to; it and every transform downstream run."""
    inputs: list[str | dict[str, Any]] = Field(min_length=1)
    """Events: a string is a raw line (its `message`), a mapping an event with document
    fields (`message`, `stream`, `@timestamp`, `kubernetes`, parsed fields)."""
    outputs: list[ExpectedOutput] = Field(default_factory=list)
    no_output_from: list[str] = Field(default_factory=list)
    """Outputs that must receive no event (a filter that drops, an unmatched route)."""

    @field_validator("inputs", mode="before")
    @classmethod
    def _times_as_text(cls, value: Any) -> Any:
        return _yaml_times_as_text(value)

    @model_validator(mode="after")
    def _expects_something(self) -> UnitTest:
        if not self.outputs and not self.no_output_from:
            raise ValueError("a test needs `outputs` or `no_output_from` (what it expects)")
        return self


def _yaml_times_as_text(value: Any) -> Any:
    """YAML reads an unquoted ``2021-02-15T10:00:00Z`` as a datetime; documents hold
    RFC 3339 text, so turn it back (a time without a zone is UTC, as in documents)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _yaml_times_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_yaml_times_as_text(v) for v in value]
    return value


def reference_problems(
    tests: list[UnitTest], section_of: dict[str, str], named_outputs: dict[str, list[str]]
) -> list[str]:
    """`tests[i]....: ...` for every reference to a component or output that does not
    exist, so `kubelogs validate` catches a test left behind by a renamed transform.
    (Whether an output is downstream of `insert_at` is checked when the test runs.)"""
    producers = {cid for cid, section in section_of.items() if section != "sinks"}
    outputs = (producers - set(named_outputs)) | {
        out for outs in named_outputs.values() for out in outs
    }
    listed = ", ".join(sorted(outputs)) or "none"
    problems: list[str] = []
    for i, test in enumerate(tests):
        if test.insert_at not in producers:
            kind = "a sink" if section_of.get(test.insert_at) == "sinks" else "not a component"
            problems.append(
                f"tests[{i}].insert_at: {test.insert_at!r} is {kind}; insert at a source or "
                f"transform ({', '.join(sorted(producers)) or 'none'})"
            )
        refs = [(f"outputs[{j}].extract_from", o.extract_from) for j, o in enumerate(test.outputs)]
        refs += [(f"no_output_from[{j}]", name) for j, name in enumerate(test.no_output_from)]
        for where, name in refs:
            if name not in outputs:
                problems.append(f"tests[{i}].{where}: {name!r} is not an output ({listed})")
    return problems
