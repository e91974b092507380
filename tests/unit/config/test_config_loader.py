"""Config loading: YAML, `${VAR}` substitution, typed components and graph checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest

import kubelogs.components  # noqa: F401  (built-in types registered before any patching)
from kubelogs.config import registry
from kubelogs.config.base import TransformConfig
from kubelogs.config.errors import ConfigFileError, ConfigInvalid
from kubelogs.config.loader import (
    Config,
    config_from_data,
    default_config_data,
    load_config,
)
from kubelogs.config.registry import names, register


def problems_of(data: Any, env: dict[str, str] | None = None) -> list[str]:
    """The problems `config_from_data` reports for `data` (fails if it is valid)."""
    with pytest.raises(ConfigInvalid) as info:
        config_from_data(data, "test.yaml", env or {})
    return info.value.problems


def minimal(**extra: Any) -> dict[str, Any]:
    """A valid config: one file source into one blackhole sink, plus `extra` top-level keys."""
    return {
        "sources": {"node": {"type": "file", "paths": ["/var/log/kubelet.log"]}},
        "sinks": {"out": {"type": "blackhole", "inputs": ["node"]}},
        **extra,
    }


@pytest.fixture
def passthrough(monkeypatch: pytest.MonkeyPatch) -> type[TransformConfig]:
    """A test-only transform type, registered in a copy of the registry for one test."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register("transform", "test_passthrough", "Test-only transform that changes nothing.")
    class PassthroughConfig(TransformConfig):
        type: Literal["test_passthrough"]

    return PassthroughConfig


class TestEnvironmentSubstitution:
    def test_variable_is_replaced_from_the_env_mapping(self) -> None:
        """`${VAR}` inside a string value takes the variable's value."""
        data = minimal()
        data["sinks"] = {"out": {"type": "file", "path": "${OUT_DIR}/x.ndjson", "inputs": ["node"]}}

        cfg = config_from_data(data, "t.yaml", {"OUT_DIR": "/srv/logs"})

        assert Path("/srv/logs/x.ndjson") == cfg.components["out"].path  # type: ignore[attr-defined]

    @pytest.mark.parametrize(
        ("env", "expected"),
        [({}, "fallback"), ({"NODE": ""}, "fallback"), ({"NODE": "node-7"}, "node-7")],
    )
    def test_default_is_used_when_the_variable_is_unset_or_empty(
        self, env: dict[str, str], expected: str
    ) -> None:
        """`${VAR:-default}` behaves like the shell: unset or empty takes the default."""
        cfg = config_from_data(minimal(node_name="${NODE:-fallback}"), "t.yaml", env)

        assert expected == cfg.root.node_name

    def test_empty_variable_without_default_is_empty(self) -> None:
        """`${VAR}` set to the empty string substitutes nothing, without an error."""
        cfg = config_from_data(minimal(node_name="n${NODE}"), "t.yaml", {"NODE": ""})

        expected_node_name = "n"
        assert expected_node_name == cfg.root.node_name

    def test_several_variables_in_one_value(self) -> None:
        """Every reference in a string is replaced."""
        env = {"HOST": "es", "PORT": "9200"}

        cfg = config_from_data(minimal(node_name="${HOST}:${PORT}/${X:-y}"), "t.yaml", env)

        expected_node_name = "es:9200/y"
        assert expected_node_name == cfg.root.node_name

    def test_double_dollar_is_a_literal_dollar(self) -> None:
        """`$$` writes `$`, so `$${VAR}` stays the text `${VAR}`."""
        data = minimal()
        data["sources"]["node"]["paths"] = ["a$$b", "$${NOT_SUBSTITUTED}", "$$$${X}"]

        cfg = config_from_data(data, "t.yaml", {"NOT_SUBSTITUTED": "oops", "X": "x"})

        expected_paths = ["a$b", "${NOT_SUBSTITUTED}", "$${X}"]
        assert expected_paths == cfg.components["node"].paths

    def test_substituted_values_are_not_substituted_again(self) -> None:
        """A value that itself contains `${...}` is taken literally."""
        cfg = config_from_data(minimal(node_name="${A}"), "t.yaml", {"A": "${B}", "B": "no"})

        expected_node_name = "${B}"
        assert expected_node_name == cfg.root.node_name

    def test_missing_variables_are_errors_naming_the_key_path(self) -> None:
        """Every unset `${VAR}` is a problem at the key (and list index) that uses it."""
        data = minimal(node_name="${NODE_NAME}")
        data["sources"]["node"]["paths"] = ["/ok", "${LOG_DIR}/x.log"]
        expected = [
            "sources.node.paths[1]: environment variable LOG_DIR is not set",
            "node_name: environment variable NODE_NAME is not set",
        ]

        actual = problems_of(data)

        assert expected == actual

    def test_process_environment_is_used_without_an_env_mapping(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`env=None` reads `os.environ`."""
        monkeypatch.setenv("KUBELOGS_TEST_NODE", "from-os-environ")

        cfg = config_from_data(minimal(node_name="${KUBELOGS_TEST_NODE}"), "t.yaml")

        expected_node_name = "from-os-environ"
        assert expected_node_name == cfg.root.node_name

    def test_values_with_yaml_syntax_cannot_change_the_structure(self, tmp_path: Path) -> None:
        """Substitution happens after parsing: `: ` and newlines in a value stay text."""
        path = tmp_path / "k.yaml"
        path.write_text(
            'node_name: "${NASTY}"\n'
            "sources:\n  node: {type: file, paths: [/x]}\n"
            "sinks:\n  out: {type: blackhole, inputs: [node]}\n"
        )

        cfg = load_config(path, env={"NASTY": "a: b\nsinks: {}"})

        expected_node_name = "a: b\nsinks: {}"
        assert expected_node_name == cfg.root.node_name
        expected_components = ["node", "out"]
        assert expected_components == sorted(cfg.components)


class TestUnknownKeysAndTypes:
    def test_unknown_top_level_key_is_an_error(self) -> None:
        """A key the root config does not know is `key: unknown key`."""
        expected = ["bogus: unknown key"]

        actual = problems_of(minimal(bogus=1))

        assert expected == actual

    def test_unknown_nested_key_names_its_path(self) -> None:
        """Unknown keys inside a section are named with their dotted path."""
        expected = ["api.bogus: unknown key"]

        actual = problems_of(minimal(api={"listen": "0.0.0.0:1", "bogus": True}))

        assert expected == actual

    def test_unknown_component_key_names_its_path(self) -> None:
        """`sources.<id>.<key>: unknown key` for a key the component type does not have."""
        data = minimal()
        data["sources"]["node"]["nope"] = 1
        expected = ["sources.node.nope: unknown key"]

        actual = problems_of(data)

        assert expected == actual

    def test_unknown_component_type_lists_the_known_types(self) -> None:
        """An unknown `type` says which types of that kind exist."""
        data = minimal()
        data["sources"]["node"] = {"type": "nope"}
        data["sinks"]["out"]["type"] = "nope_sink"
        known_sources = ", ".join(names("source"))
        known_sinks = ", ".join(names("sink"))

        actual = problems_of(data)

        assert {"file", "kubernetes_logs"} <= set(names("source"))
        assert {"blackhole", "file", "stdout"} <= set(names("sink"))
        assert [
            f"sources.node.type: unknown source type 'nope'; one of {known_sources}",
            f"sinks.out.type: unknown sink type 'nope_sink'; one of {known_sinks}",
        ] == actual

    def test_missing_component_type_lists_the_known_types(self) -> None:
        """A component without `type` says which types exist."""
        data = minimal()
        data["sources"]["node"] = {"paths": ["/x"]}

        actual = problems_of(data)

        assert [f"sources.node.type: missing; one of {', '.join(names('source'))}"] == actual

    def test_wrong_root_value_types_are_reported_with_their_path(self) -> None:
        """Bad root values are `path: reason`, unit errors included."""
        data = minimal(shutdown_grace_period="soon", api={"enabled": "maybe"})

        actual = problems_of(data)

        expected = [
            "api.enabled: 'maybe' is not true or false",
            "shutdown_grace_period: 'soon' is not a duration like 30s, 5m or 7d",
        ]
        assert expected == actual

    def test_component_value_errors_are_reported_with_their_path(self) -> None:
        """Unit errors and bad literals inside a component name their key."""
        data = minimal()
        data["sources"]["node"]["max_line_size"] = "huge"
        data["sources"]["node"]["glob_interval"] = "1x"

        actual = problems_of(data)

        expected = [
            "sources.node.max_line_size: 'huge' is not a size like 512MiB, 64KiB or 1GB",
            "sources.node.glob_interval: '1x' is not a duration like 30s, 5m or 7d",
        ]
        assert expected == actual

    def test_top_level_and_component_problems_are_reported_together(self) -> None:
        """An unknown top-level key does not hide the problems inside components."""
        data = minimal(bogus=1)
        data["sources"]["node"]["nope"] = 1

        actual = problems_of(data)

        expected = ["bogus: unknown key", "sources.node.nope: unknown key"]
        assert expected == actual

    def test_config_that_is_not_a_mapping_is_an_error(self) -> None:
        """A YAML list or scalar at the top is rejected as a whole."""
        expected_problems = ["<root>: the config must be a mapping of keys"]
        assert expected_problems == problems_of([1, 2])


class TestSeveralProblems:
    def test_every_problem_is_reported_at_once(self) -> None:
        """Unknown keys, types, inputs and unread sources all come back in one list."""
        data = {
            "sources": {
                "c": {"type": "kubernetes_logs", "nope": 1},
                "d": {"type": "wat"},
            },
            "sinks": {
                "o": {"type": "blackhole", "inputs": ["c", "o", "zz", "k8s_*"]},
                "p": {"type": "file", "inputs": ["o"]},
            },
        }
        expected = [
            "sources.c.nope: unknown key",
            "sources.d.type: unknown source type 'wat'; one of " + ", ".join(names("source")),
            "sinks.p.path: required key is missing",
            "sinks.o.inputs[1]: 'o' is a sink; sinks produce nothing",
            "sinks.o.inputs[2]: 'zz' matches no source or transform",
            "sinks.o.inputs[3]: 'k8s_*' matches no source or transform",
            "sinks.p.inputs[0]: 'o' is a sink; sinks produce nothing",
            "sources.d: nothing reads its output",
        ]

        actual = problems_of(data)

        assert expected == actual

    def test_exception_message_names_the_source_and_every_problem(self) -> None:
        """`str(ConfigInvalid)` is the file name and the problems joined."""
        with pytest.raises(ConfigInvalid) as info:
            config_from_data(minimal(a=1, b=2), "/etc/kubelogs/k.yaml", {})

        expected_source = "/etc/kubelogs/k.yaml"
        assert expected_source == info.value.source
        expected_message = "/etc/kubelogs/k.yaml: a: unknown key; b: unknown key"
        assert expected_message == str(info.value)


class TestGraph:
    def test_fan_in_and_fan_out_resolve_inputs(self) -> None:
        """Valid wiring gives each consumer its upstream ids."""
        data = {
            "sources": {
                "a": {"type": "file", "paths": ["/a"]},
                "b": {"type": "file", "paths": ["/b"]},
            },
            "sinks": {
                "one": {"type": "blackhole", "inputs": ["a", "b"]},
                "two": {"type": "blackhole", "inputs": ["a"]},
            },
        }

        cfg = config_from_data(data, "t.yaml", {})

        expected_inputs = {"one": ["a", "b"], "two": ["a"]}
        assert expected_inputs == cfg.inputs

    def test_unknown_input_is_an_error(self) -> None:
        """An input that names nothing is reported at its list index."""
        data = minimal()
        data["sinks"]["out"]["inputs"] = ["node", "missing"]

        actual = problems_of(data)

        expected = ["sinks.out.inputs[1]: 'missing' matches no source or transform"]
        assert expected == actual

    def test_input_that_names_a_sink_is_an_error(self) -> None:
        """Sinks produce nothing, so reading one is reported as such."""
        data = minimal()
        data["sinks"]["other"] = {"type": "blackhole", "inputs": ["out"]}

        actual = problems_of(data)

        expected = ["sinks.other.inputs[0]: 'out' is a sink; sinks produce nothing"]
        assert expected == actual

    def test_glob_inputs_are_expanded_to_matching_producers(self) -> None:
        """`k8s_*` reads every source or transform whose id matches, each once."""
        data = {
            "sources": {
                "k8s_a": {"type": "kubernetes_logs"},
                "k8s_b": {"type": "file", "paths": ["/b"]},
                "other": {"type": "file", "paths": ["/o"]},
            },
            "sinks": {"out": {"type": "blackhole", "inputs": ["k8s_*", "k8s_a", "oth?r"]}},
        }

        cfg = config_from_data(data, "t.yaml", {})

        expected_inputs = {"out": ["k8s_a", "k8s_b", "other"]}
        assert expected_inputs == cfg.inputs

    def test_glob_that_matches_nothing_is_an_error(self) -> None:
        """A glob with no match is reported like an unknown id."""
        data = minimal()
        data["sinks"]["out"]["inputs"] = ["node", "k8s_*"]

        actual = problems_of(data)

        expected = ["sinks.out.inputs[1]: 'k8s_*' matches no source or transform"]
        assert expected == actual

    def test_glob_does_not_make_a_transform_read_itself(
        self, passthrough: type[TransformConfig]
    ) -> None:
        """A transform whose id matches its own glob reads only the other matches."""
        data = {
            "sources": {"k8s_src": {"type": "kubernetes_logs"}},
            "transforms": {"k8s_meta": {"type": "test_passthrough", "inputs": ["k8s_*"]}},
            "sinks": {"out": {"type": "blackhole", "inputs": ["k8s_meta"]}},
        }

        cfg = config_from_data(data, "t.yaml", {})

        expected_inputs = {"k8s_meta": ["k8s_src"], "out": ["k8s_meta"]}
        assert expected_inputs == cfg.inputs
        assert isinstance(cfg.components["k8s_meta"], passthrough)

    def test_cycle_between_transforms_is_an_error(self, passthrough: type[TransformConfig]) -> None:
        """Transforms that read each other are reported with the cycle's path."""
        data = {
            "sources": {"src": {"type": "file", "paths": ["/x"]}},
            "transforms": {
                "a": {"type": "test_passthrough", "inputs": ["src", "b"]},
                "b": {"type": "test_passthrough", "inputs": ["a"]},
            },
            "sinks": {"out": {"type": "blackhole", "inputs": ["b"]}},
        }

        actual = problems_of(data)

        expected = ["transforms.b.inputs: cycle a -> b -> a"]
        assert expected == actual

    def test_transform_reading_itself_is_an_error(self, passthrough: type[TransformConfig]) -> None:
        """A transform cannot be its own input."""
        data = {
            "sources": {"src": {"type": "file", "paths": ["/x"]}},
            "transforms": {"t": {"type": "test_passthrough", "inputs": ["src", "t"]}},
            "sinks": {"out": {"type": "blackhole", "inputs": ["t"]}},
        }

        actual = problems_of(data)

        expected = ["transforms.t.inputs: a component cannot read itself"]
        assert expected == actual

    def test_source_nobody_reads_is_an_error(self) -> None:
        """A source whose output goes nowhere is reported."""
        data = minimal()
        data["sources"]["idle"] = {"type": "kubernetes_logs"}

        actual = problems_of(data)

        expected = ["sources.idle: nothing reads its output"]
        assert expected == actual

    def test_config_without_components_needs_a_sink(self) -> None:
        """An empty config is rejected because there is no sink."""
        expected_problems = ["sinks: at least one sink is required"]
        assert expected_problems == problems_of({})

    def test_config_with_sources_but_no_sink_reports_the_missing_sink(self) -> None:
        """A source with no sink says that a sink is required, besides the unread source."""
        actual = problems_of({"sources": {"c": {"type": "kubernetes_logs"}}})

        assert "sinks: at least one sink is required" in actual

    def test_sink_without_inputs_is_one_problem(self) -> None:
        """A missing `inputs` is reported once at `sinks.<id>.inputs`, not twice."""
        data = minimal()
        del data["sinks"]["out"]["inputs"]

        actual = problems_of(data)

        expected_count = 1
        assert expected_count == sum(1 for p in actual if p.startswith("sinks.out.inputs:"))

    def test_same_id_in_two_sections_is_an_error(self) -> None:
        """Component ids are unique across sources, transforms and sinks."""
        data = minimal()
        data["sources"]["dup"] = {"type": "file", "paths": ["/d"]}
        data["sinks"]["out"]["inputs"] = ["node", "dup"]
        data["sinks"]["dup"] = {"type": "blackhole", "inputs": ["node"]}

        actual = problems_of(data)

        expected = ["sinks.dup: id also used in sources"]
        assert expected == actual

    def test_id_with_forbidden_characters_is_an_error(self) -> None:
        """Ids use letters, digits, `_`, `.` and `-`."""
        data = minimal()
        data["sinks"]["bad id!"] = {"type": "blackhole", "inputs": ["node"]}

        actual = problems_of(data)

        expected = ["sinks.bad id!: component ids use letters, digits, _ . -"]
        assert expected == actual


class TestLoadConfigFile:
    def test_valid_file_loads_into_typed_settings(self, tmp_path: Path) -> None:
        """Root settings, units and components come out typed, with inputs resolved."""
        path = tmp_path / "kubelogs.yaml"
        path.write_text(
            "data_dir: ${DATA:-/var/lib/kubelogs}\n"
            "api: {listen: '0.0.0.0:24231'}\n"
            "shutdown_grace_period: 45s\n"
            "sources:\n"
            "  containers:\n"
            "    type: kubernetes_logs\n"
            "    max_line_size: 64KiB\n"
            "sinks:\n"
            "  out: {type: file, path: /tmp/out.ndjson, schema: fluentd, inputs: [containers]}\n"
        )

        cfg = load_config(path, env={"DATA": "/data"})

        assert isinstance(cfg, Config)
        assert str(path) == cfg.source
        assert (Path("/data"), "0.0.0.0:24231", 45.0) == (
            cfg.root.data_dir,
            cfg.root.api.listen,
            cfg.root.shutdown_grace_period,
        )
        expected_max_line_size = 64 * 1024
        assert expected_max_line_size == cfg.components["containers"].max_line_size
        expected_schema_ = "fluentd"
        assert expected_schema_ == cfg.components["out"].schema_
        expected_inputs = {"out": ["containers"]}
        assert expected_inputs == cfg.inputs

    def test_defaults_apply_to_omitted_root_keys(self, tmp_path: Path) -> None:
        """Omitted root keys take the documented defaults."""
        path = tmp_path / "k.yaml"
        path.write_text(
            "sources: {node: {type: file, paths: [/x]}}\n"
            "sinks: {out: {type: blackhole, inputs: [node]}}\n"
        )

        cfg = load_config(path, env={})

        assert (Path("/var/lib/kubelogs"), "127.0.0.1:24231", 30.0) == (
            cfg.root.data_dir,
            cfg.root.api.listen,
            cfg.root.shutdown_grace_period,
        )

    def test_invalid_yaml_is_a_file_error_with_line_and_column(self, tmp_path: Path) -> None:
        """Broken YAML names the file, line and column."""
        path = tmp_path / "broken.yaml"
        path.write_text("a: 1\nb: [1, 2\nc: 3\n")

        with pytest.raises(ConfigFileError) as info:
            load_config(path, env={})

        assert str(info.value).startswith(f"{path}: not valid YAML at line 3, column 2: ")

    def test_tab_indentation_is_a_file_error_with_line_and_column(self, tmp_path: Path) -> None:
        """A tab where YAML wants spaces is located precisely."""
        path = tmp_path / "tabs.yaml"
        path.write_text("sources:\n\tc: 1\n")

        with pytest.raises(ConfigFileError) as info:
            load_config(path, env={})

        assert f"{path}: not valid YAML at line 2, column 1" in str(info.value)

    def test_missing_file_is_a_file_error(self, tmp_path: Path) -> None:
        """A config path that does not exist is named in the error."""
        path = tmp_path / "absent.yaml"

        with pytest.raises(ConfigFileError) as info:
            load_config(path, env={})

        assert f"{path}: no such config file" == str(info.value)

    def test_file_that_is_not_utf8_is_a_file_error(self, tmp_path: Path) -> None:
        """Binary content is a readable error, not a crash."""
        path = tmp_path / "bin.yaml"
        path.write_bytes(b"\xff\xfe\x00")

        with pytest.raises(ConfigFileError, match="cannot read config file"):
            load_config(path, env={})

    def test_empty_file_is_a_config_without_sinks(self, tmp_path: Path) -> None:
        """An empty file is an empty mapping, which lacks a sink."""
        path = tmp_path / "empty.yaml"
        path.write_text("")

        with pytest.raises(ConfigInvalid) as info:
            load_config(path, env={})

        expected_problems = ["sinks: at least one sink is required"]
        assert expected_problems == info.value.problems


class TestDefaultConfig:
    def test_outside_a_cluster_containers_go_to_the_local_store(self) -> None:
        """Without `KUBERNETES_SERVICE_HOST`: container logs -> local store."""
        expected = {
            "sources": {"containers": {"type": "kubernetes_logs"}},
            "sinks": {"store": {"type": "local", "inputs": ["containers"]}},
        }

        assert expected == default_config_data({})
        assert expected == default_config_data({"KUBERNETES_SERVICE_HOST": ""})

    def test_inside_a_cluster_metadata_is_added_before_the_store(self) -> None:
        """With `KUBERNETES_SERVICE_HOST`: containers -> kubernetes_metadata -> local store."""
        expected = {
            "sources": {"containers": {"type": "kubernetes_logs"}},
            "transforms": {"k8s": {"type": "kubernetes_metadata", "inputs": ["containers"]}},
            "sinks": {"store": {"type": "local", "inputs": ["k8s"]}},
        }

        actual = default_config_data({"KUBERNETES_SERVICE_HOST": "10.96.0.1"})

        assert expected == actual
