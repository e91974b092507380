"""Read a config file: YAML -> environment substitution -> typed models -> graph checks.

Every problem is collected before failing, as ``path.to.key: message``, so that
`kubelogs validate` reports all of them at once (as Vector's topology builder does).
Environment references ``${VAR}`` and ``${VAR:-default}`` are replaced inside string
values after YAML parsing (so a value can never break the YAML structure); ``$$`` is a
literal ``$``.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

from kubelogs.config.addresses import ListenAddress
from kubelogs.config.base import ComponentConfig, StrictModel
from kubelogs.config.errors import ConfigFileError, ConfigInvalid
from kubelogs.config.registry import lookup, names
from kubelogs.config.unit_tests import UnitTest, reference_problems
from kubelogs.config.units import Duration

DEFAULT_CONFIG_PATH = Path("/etc/kubelogs/kubelogs.yaml")
DEFAULT_DATA_DIR = Path("/var/lib/kubelogs")
BUILTIN_SOURCE = "<built-in default config>"
"""How messages name the config when no file was given and none was found."""

_VAR_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ApiConfig(StrictModel):
    enabled: bool = True
    """Serve /metrics, /healthz and /readyz."""
    listen: ListenAddress = "127.0.0.1:24231"
    """host:port (IPv6 in brackets, port 1-65535, 0 = any free port); loopback by
    default, the Helm chart sets 0.0.0.0:24231."""


class LogConfig(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["console", "json"] = "console"
    """`json` for log collection by another pipeline, `console` for people
    (`kubelogs run --log-format` overrides it)."""
    summary_interval: Duration = 60.0
    """Seconds between the one-line progress summaries at info level (events in and
    out per component, file lag); `0` turns them off."""


class RootConfig(StrictModel):
    """The whole file. Components are checked separately against their registered type."""

    data_dir: Path = DEFAULT_DATA_DIR
    """Checkpoints, buffers and the local store's default home."""
    node_name: str = ""
    """This node's name; defaults to `$NODE_NAME`, then the host name."""
    api: ApiConfig = Field(default_factory=ApiConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    shutdown_grace_period: Duration = 30.0
    """How long SIGTERM waits for sinks to flush; keep below the pod's
    terminationGracePeriodSeconds."""
    sources: dict[str, Any] = Field(default_factory=dict)
    transforms: dict[str, Any] = Field(default_factory=dict)
    sinks: dict[str, Any] = Field(default_factory=dict)
    watch_config: bool = False
    """Reload when the config file changes (polled every second; follows the symlink
    swap of a ConfigMap), as `SIGHUP` does."""
    tests: list[UnitTest] = Field(default_factory=list)
    """Unit tests of transforms (and sources' parsers), run by `kubelogs test`; checked
    by `kubelogs validate`, otherwise ignored by `kubelogs run`."""


class Config:
    """A validated configuration: the root settings and typed component configs."""

    def __init__(
        self,
        root: RootConfig,
        components: dict[str, ComponentConfig],
        inputs: dict[str, list[str]],
        source: str,
    ) -> None:
        self.root = root
        self.components = components
        self.inputs = inputs
        """Component id -> resolved upstream component ids (globs expanded)."""
        self.source = source

    @property
    def node_name(self) -> str:
        return self.root.node_name or os.environ.get("NODE_NAME") or socket.gethostname()


def substitute_env(value: Any, env: Mapping[str, str], path: str, problems: list[str]) -> Any:
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name, default = m.group(1), m.group(2)
            if name in env and (env[name] or default is None):
                return env[name]
            if default is not None:
                return default
            problems.append(f"{path or '<root>'}: environment variable {name} is not set")
            return ""

        return _VAR_RE.sub(repl, value)
    if isinstance(value, dict):
        return {
            k: substitute_env(v, env, f"{path}.{k}" if path else str(k), problems)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [substitute_env(v, env, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    return value


def _loc(prefix: str, loc: tuple[int | str, ...]) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out or "<root>"


def _show(value: Any) -> str:
    """The value as the user wrote it in YAML (``null``, ``true``), shortened."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _choices(expected: str) -> str:
    found = re.findall(r"'([^']*)'", expected)
    return ", ".join(found) if found else expected


def _in_user_words(e: Any) -> str:
    """pydantic's message for one error, rewritten to echo the value and the choices.

    "Input should be 'beginning' or 'end'" tells a user neither what they wrote nor
    where to look; ``'middle' is not one of: beginning, end`` does.
    """
    kind = e["type"]
    value = e.get("input")
    ctx = e.get("ctx") or {}
    if kind == "missing":
        return "required key is missing"
    if kind in ("literal_error", "enum"):
        return f"{_show(value)} is not one of: {_choices(str(ctx.get('expected', '')))}"
    if kind == "path_type":
        return f"{_show(value)} is not a path; write a string like /var/lib/kubelogs"
    if kind == "string_type":
        return f"{_show(value)} is not a string (quote it in YAML)"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"{_show(value)} is not a whole number"
    if kind in ("float_type", "float_parsing"):
        return f"{_show(value)} is not a number"
    if kind in ("bool_type", "bool_parsing"):
        return f"{_show(value)} is not true or false"
    if kind in ("list_type", "tuple_type", "set_type"):
        return f"{_show(value)} is not a list; write [a, b] or one `- item` per line"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"{_show(value)} is not a mapping; write `key: value` lines below it"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = next(iter(ctx.values()), "")
        words = {
            "greater_than": "more than",
            "greater_than_equal": "at least",
            "less_than": "less than",
            "less_than_equal": "at most",
        }
        return f"{_show(value)} is out of range: must be {words[kind]} {bound}"
    msg = str(e["msg"])
    if msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    if msg.startswith("Assertion failed, "):
        return msg[len("Assertion failed, ") :]
    return f"{_show(value)}: {msg[:1].lower()}{msg[1:]}"


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside `X`, `X | None` or `Annotated[X, ...]`, if there is one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap_model(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _unwrap_model(arg)
            if found is not None:
                return found
    return None


def _known_keys(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> list[str]:
    """The keys a mapping at `loc` (inside `model`) accepts: field names and aliases."""
    for part in loc:
        if model is None:
            return []
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        model = _unwrap_model(field.annotation) if field is not None else None
    if model is None:
        return []
    keys = []
    for name, f in model.model_fields.items():
        keys.append(f.alias or name)
    return keys


def did_you_mean(word: str, candidates: list[str]) -> str:
    """`` (did you mean `x`?)`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


def _pydantic_problems(
    prefix: str, err: ValidationError, model: type[BaseModel] | None = None
) -> list[str]:
    problems = []
    for e in err.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        if e["type"] == "extra_forbidden":
            key = str(loc[-1]) if loc else ""
            msg = "unknown key" + did_you_mean(key, _known_keys(model, loc[:-1]))
        else:
            msg = _in_user_words(e)
        problems.append(f"{_loc(prefix, loc)}: {msg}")
    return problems


def parse_yaml(text: str, source: str) -> Any:
    """The YAML document as Python data; `ConfigFileError` with line and column."""
    return parse_yaml_checked(text, source)[0]


def parse_yaml_checked(text: str, source: str) -> tuple[Any, list[str]]:
    """The YAML document and a problem for every key written twice in one mapping.

    PyYAML keeps the last of two equal keys silently: two sinks named `s` became one,
    and the config was reported valid. The node tree still has both, with their lines.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        duplicates = _duplicate_keys(node, "") if node is not None else []
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        raise ConfigFileError(
            f"{source}: not valid YAML at {where}: {exc.problem or exc}"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{source}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    return data, duplicates


def _duplicate_keys(node: yaml.Node, path: str, seen_nodes: set[int] | None = None) -> list[str]:
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:  # an alias: its keys were checked where it was defined
        return []
    seen_nodes.add(id(node))
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = str(key_node.value)
            where = f"{path}.{key}" if path else key
            line = key_node.start_mark.line + 1
            if key in first_line:
                problems.append(
                    f"{where}: defined twice (lines {first_line[key]} and {line}); "
                    "YAML would keep only the second"
                )
            else:
                first_line[key] = line
            problems.extend(_duplicate_keys(value_node, where, seen_nodes))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems.extend(_duplicate_keys(item, f"{path}[{i}]", seen_nodes))
    return problems


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate `path`; raise `ConfigFileError` or `ConfigInvalid` (all problems)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(f"{source}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{source}: cannot read config file: {exc}") from None
    data, duplicates = parse_yaml_checked(text, source)
    return config_from_data(data, source, env, problems=duplicates)


def config_from_data(
    data: Any,
    source: str,
    env: Mapping[str, str] | None = None,
    *,
    problems: list[str] | None = None,
) -> Config:
    """Validate parsed YAML; `problems` already found (duplicate keys) are reported with
    the rest."""
    import kubelogs.components  # noqa: F401  (registers the built-in component types)

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigInvalid(source, ["<root>: the config must be a mapping of keys"])
    problems = list(problems or [])
    data = substitute_env(data, os.environ if env is None else env, "", problems)
    # Component tables are checked one by one against their registered types, so a
    # problem at the top level does not hide the problems inside components.
    sections: dict[str, dict[Any, Any]] = {}
    rest = dict(data)
    for section in ("sources", "transforms", "sinks"):
        table = rest.pop(section, None)
        if table is None:
            table = {}
        if not isinstance(table, dict):
            problems.append(f"{section}: must be a mapping of component id to settings")
            table = {}
        sections[section] = table
    root = RootConfig()
    try:
        root = RootConfig.model_validate(rest)
    except ValidationError as exc:
        problems.extend(_pydantic_problems("", exc, RootConfig))

    components: dict[str, ComponentConfig] = {}
    kinds = {"sources": "source", "transforms": "transform", "sinks": "sink"}
    section_of: dict[str, str] = {}
    for section, kind in kinds.items():
        for cid, raw in sections[section].items():
            where = f"{section}.{cid}"
            if not isinstance(cid, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", cid):
                problems.append(f"{where}: component ids use letters, digits, _ . -")
                continue
            if cid in section_of:
                problems.append(f"{where}: id also used in {section_of[cid]}")
                continue
            section_of[cid] = section
            if not isinstance(raw, dict):
                problems.append(f"{where}: must be a mapping with a `type`")
                continue
            type_name = raw.get("type")
            if not type_name:
                problems.append(f"{where}.type: missing; one of {', '.join(names(kind))}")
                others = [k for k in raw if isinstance(k, str) and k != "type"]
                for key in difflib.get_close_matches("type", others, n=1, cutoff=0.6):
                    problems.append(f"{where}.{key}: unknown key (did you mean `type`?)")
                continue
            reg = lookup(kind, str(type_name))
            if reg is None:
                problems.append(
                    f"{where}.type: unknown {kind} type {type_name!r}"
                    f"{did_you_mean(str(type_name), names(kind))}; "
                    f"one of {', '.join(names(kind))}"
                )
                continue
            try:
                components[cid] = reg.config.model_validate(raw)
            except ValidationError as exc:
                problems.extend(_pydantic_problems(where, exc, reg.config))

    inputs = _check_graph(sections, section_of, problems)
    problems.extend(reference_problems(root.tests, section_of, _named_outputs(sections)))
    if not sections["sinks"] and not any(p.startswith("sinks:") for p in problems):
        problems.append("sinks: at least one sink is required")
    if problems:
        raise ConfigInvalid(source, problems)
    root = root.model_copy(update=sections)
    return Config(root, components, inputs, source)


def _check_graph(
    sections: dict[str, dict[Any, Any]],
    section_of: dict[str, str],
    problems: list[str],
) -> dict[str, list[str]]:
    import fnmatch

    producers = [cid for cid, s in section_of.items() if s in ("sources", "transforms")]
    # Named outputs (`route`): `<id>.<name>` are producers, the bare id is not.
    outputs_of = _named_outputs(sections)
    owner_of = {out: cid for cid, outs in outputs_of.items() for out in outs}
    producers = [p for p in producers if p not in outputs_of] + list(owner_of)
    for out, owner in owner_of.items():
        if out in section_of:
            problems.append(
                f"{section_of[out]}.{out}: id is also the name of an output of {owner}; "
                "rename one of them"
            )
    inputs: dict[str, list[str]] = {}
    for section in ("transforms", "sinks"):
        for cid, raw in sections[section].items():
            if not isinstance(raw, dict):
                continue
            wanted = raw.get("inputs")
            if not isinstance(wanted, list):
                continue  # reported by the component's model (required, a list)
            resolved: list[str] = []
            for i, pattern in enumerate(wanted):
                pattern = str(pattern)
                if any(ch in pattern for ch in "*?["):
                    hits = [p for p in producers if p != cid and fnmatch.fnmatchcase(p, pattern)]
                else:
                    hits = [pattern] if pattern in producers else []
                if not hits:
                    why = (
                        "is a sink; sinks produce nothing"
                        if section_of.get(pattern) == "sinks"
                        else _named_output_problem(pattern, outputs_of)
                        or "matches no source or transform"
                    )
                    problems.append(f"{section}.{cid}.inputs[{i}]: {pattern!r} {why}")
                resolved.extend(h for h in hits if h not in resolved)
            if cid in resolved:
                problems.append(f"{section}.{cid}.inputs: a component cannot read itself")
                resolved.remove(cid)
            inputs[cid] = resolved

    # Cycles (transforms only can form them).
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for up in (owner_of.get(u, u) for u in inputs.get(node, [])):
            if state.get(up) == 1:
                cycle = [*trail[trail.index(up) :], up] if up in trail else [node, up]
                problems.append(
                    f"{section_of.get(node, 'transforms')}.{node}.inputs: cycle "
                    + " -> ".join(cycle)
                )
            elif state.get(up) is None:
                visit(up, [*trail, up])
        state[node] = 2

    for cid in inputs:
        if state.get(cid) is None:
            visit(cid, [cid])

    consumed = {owner_of.get(up, up) for ups in inputs.values() for up in ups}
    for cid in dict.fromkeys(owner_of.get(p, p) for p in producers):
        if cid not in consumed:
            problems.append(f"{section_of[cid]}.{cid}: nothing reads its output")
    return inputs


def _named_outputs(sections: dict[str, dict[Any, Any]]) -> dict[str, list[str]]:
    """Component id -> its named outputs (``<id>.<name>``), for transforms that have
    them (`route`: one per route and ``_unmatched``)."""
    found: dict[str, list[str]] = {}
    for cid, raw in sections["transforms"].items():
        if isinstance(raw, dict) and raw.get("type") == "route":
            routes = raw.get("routes")
            names = [*map(str, routes), "_unmatched"] if isinstance(routes, dict) else []
            found[str(cid)] = [f"{cid}.{name}" for name in names]
    return found


def _named_output_problem(pattern: str, outputs_of: dict[str, list[str]]) -> str | None:
    """Why `pattern` names no output of a component with named outputs, if it is one."""
    if pattern in outputs_of:
        names = ", ".join(o[len(pattern) + 1 :] for o in outputs_of[pattern])
        return f"has named outputs; read one of them as {pattern}.<name> ({names})"
    owner, dot, name = pattern.rpartition(".")
    if dot and owner in outputs_of:
        names = ", ".join(o[len(owner) + 1 :] for o in outputs_of[owner])
        return f"is not an output of {owner}: it has no route {name!r} (outputs: {names})"
    return None


def default_config_data(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The built-in pipeline: container logs -> metadata when in a cluster -> local store."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {
        "sources": {"containers": {"type": "kubernetes_logs"}},
        "sinks": {"store": {"type": "local", "inputs": ["containers"]}},
    }
    if env.get("KUBERNETES_SERVICE_HOST"):
        data["transforms"] = {"k8s": {"type": "kubernetes_metadata", "inputs": ["containers"]}}
        data["sinks"]["store"]["inputs"] = ["k8s"]
    return data


def resolve_config_path(explicit: str | None) -> Path | None:
    """`-c FILE`, else `$KUBELOGS_CONFIG`, else /etc/kubelogs/kubelogs.yaml if present."""
    if explicit:
        return Path(explicit)
    env_path = os.environ.get("KUBELOGS_CONFIG")
    if env_path:
        return Path(env_path)
    if DEFAULT_CONFIG_PATH.exists():
        return DEFAULT_CONFIG_PATH
    return None


def load_effective_config(explicit: str | None) -> Config:
    path = resolve_config_path(explicit)
    if path is None:
        return config_from_data(default_config_data(), BUILTIN_SOURCE)
    return load_config(path)


def default_store_path() -> Path:
    """Where `kubelogs search` looks without `--store`: `$KUBELOGS_STORE`, else the
    local sink of the effective config, else ``<data_dir>/store``."""
    env_store = os.environ.get("KUBELOGS_STORE")
    if env_store:
        return Path(env_store)
    try:
        cfg = load_effective_config(None)
    except Exception:
        return DEFAULT_DATA_DIR / "store"
    for comp in cfg.components.values():
        if comp.type == "local":
            path = getattr(comp, "path", None)
            return Path(path) if path else cfg.root.data_dir / "store"
    return cfg.root.data_dir / "store"
