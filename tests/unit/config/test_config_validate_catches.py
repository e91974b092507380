"""`kubelogs validate` rejects what `kubelogs run` would reject, in the user's words.

Issue 10 items 2 and 3: listen addresses, duplicate keys, paths that cannot be created,
the config lookup without `-c`, did-you-mean hints, values echoed with their choices.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubelogs.config.addresses import parse_listen
from kubelogs.config.errors import ConfigInvalid
from kubelogs.config.loader import config_from_data, load_config


def validate(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KUBELOGS_")}
    return subprocess.run(
        [sys.executable, "-m", "kubelogs", "validate", *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=120,
        check=False,
    )


def problems(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "k.yaml"
    path.write_text(text)
    with pytest.raises(ConfigInvalid) as err:
        load_config(path)
    return err.value.problems


BASE = """\
data_dir: {tmp}/data
sources:
  c: {{type: file, paths: [/var/log/x.log]}}
sinks:
  s: {{type: blackhole, inputs: [c]}}
"""


class TestListenAddress:
    @pytest.mark.parametrize(
        ("listen", "expected"),
        [
            ("127.0.0.1:24231", ("127.0.0.1", 24231)),
            ("0.0.0.0:1", ("0.0.0.0", 1)),
            ("localhost:65535", ("localhost", 65535)),
            ("[::1]:24231", ("::1", 24231)),
            ("[::]:8080", ("::", 8080)),
            (":24231", ("0.0.0.0", 24231)),
            ("127.0.0.1:0", ("127.0.0.1", 0)),
        ],
    )
    def test_accepted_forms(self, listen: str, expected: tuple[str, int]) -> None:
        """host:port, IPv6 in brackets, an empty host for every interface."""
        assert expected == parse_listen(listen)

    @pytest.mark.parametrize(
        ("listen", "needle"),
        [
            ("localhost", "has no port"),
            ("127.0.0.1:99999", "out of range (1 to 65535)"),
            ("127.0.0.1:-1", "not a number from 1 to 65535"),
            ("127.0.0.1:http", "not a number"),
            ("::1:8080", "in brackets, like [::1]:8080"),
            ("[::1]8080", "has no port"),
            ("[::1:8080", "no closing ']'"),
            ("[nope]:80", "not an IPv6 address"),
            ("300.1.1.1:80", "not a host name or IP address"),
            ("under_score:80", "not a host name or IP address"),
        ],
    )
    def test_rejected_forms_say_why(self, listen: str, needle: str) -> None:
        """Each rejection names the address and what is wrong with it."""
        with pytest.raises(ValueError, match=r".+") as err:
            parse_listen(listen)

        assert needle in str(err.value)
        assert repr(listen) in str(err.value)

    def test_config_reports_the_listen_key(self) -> None:
        """In a config the problem is at `api.listen`, like every other key."""
        data = {
            "api": {"listen": "localhost"},
            "sources": {"c": {"type": "file", "paths": ["/x"]}},
            "sinks": {"s": {"type": "blackhole", "inputs": ["c"]}},
        }

        with pytest.raises(ConfigInvalid) as err:
            config_from_data(data, "t.yaml")

        assert 1 == len(err.value.problems)
        assert err.value.problems[0].startswith("api.listen: 'localhost' has no port")


class TestDuplicateKeys:
    def test_two_sinks_with_one_name_are_rejected_with_both_lines(self, tmp_path: Path) -> None:
        """PyYAML keeps the last of two equal keys; the config is not "valid" then."""
        text = (
            "sources:\n"
            "  c: {type: file, paths: [/x]}\n"
            "sinks:\n"
            "  s:\n"
            "    type: stdout\n"
            "    inputs: [c]\n"
            "  s:\n"
            "    type: blackhole\n"
            "    inputs: [c]\n"
        )

        found = problems(text, tmp_path)

        expected = ["sinks.s: defined twice (lines 4 and 7); YAML would keep only the second"]
        assert expected == found

    def test_duplicates_inside_a_component_and_at_the_root(self, tmp_path: Path) -> None:
        """Every level is checked, and other problems are still reported beside them."""
        text = (
            "data_dir: /a\n"
            "data_dir: /b\n"
            "sources:\n"
            "  c: {type: file, paths: [/x], paths: [/y], bogus: 1}\n"
            "sinks:\n"
            "  s: {type: blackhole, inputs: [c]}\n"
        )

        found = problems(text, tmp_path)

        assert "data_dir: defined twice (lines 1 and 2); YAML would keep only the second" in found
        assert any(p.startswith("sources.c.paths: defined twice (lines 4 and 4)") for p in found)
        assert "sources.c.bogus: unknown key" in found

    def test_anchors_and_merge_keys_are_not_duplicates(self, tmp_path: Path) -> None:
        """`<<: *defaults` then overriding a key is the point of merge keys."""
        path = tmp_path / "k.yaml"
        path.write_text(
            "x-tail: &tail {type: file, paths: [/x], poll_interval: 1s}\n"
            "sources:\n"
            "  c:\n"
            "    <<: *tail\n"
            "    poll_interval: 2s\n"
            "  d: *tail\n"
            "sinks:\n"
            "  s: {type: blackhole, inputs: [c, d]}\n"
        )

        with pytest.raises(ConfigInvalid) as err:
            load_config(path)

        assert ["x-tail: unknown key"] == err.value.problems


class TestPaths:
    def test_data_dir_below_a_file_is_reported_without_creating_anything(
        self, tmp_path: Path
    ) -> None:
        """A data_dir that cannot be created is a problem at `data_dir`."""
        blocker = tmp_path / "file"
        blocker.write_text("")
        config = tmp_path / "k.yaml"
        config.write_text(BASE.format(tmp=blocker))

        result = validate("-c", str(config))

        assert 1 == result.returncode
        assert f"data_dir: cannot create '{blocker}/data'" in result.stderr
        assert "ENOTDIR" in result.stderr

    def test_sink_path_that_cannot_be_created_is_reported(self, tmp_path: Path) -> None:
        """A file sink's `path` is checked as `data_dir` is."""
        blocker = tmp_path / "file"
        blocker.write_text("")
        config = tmp_path / "k.yaml"
        config.write_text(
            BASE.format(tmp=tmp_path).replace(
                "s: {type: blackhole, inputs: [c]}",
                f"s: {{type: file, inputs: [c], path: {blocker}/out/x.ndjson}}",
            )
        )

        result = validate("-c", str(config))

        assert 1 == result.returncode
        assert "sinks.s.path: cannot create" in result.stderr
        assert not (tmp_path / "data").exists(), "validate creates nothing"

    @pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
    def test_data_dir_in_a_read_only_directory_is_reported(self, tmp_path: Path) -> None:
        """Permission denied is reported with its errno."""
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        config = tmp_path / "k.yaml"
        config.write_text(BASE.format(tmp=ro))

        result = validate("-c", str(config))

        assert 1 == result.returncode
        assert "EACCES" in result.stderr


class TestLookupWithoutDashC:
    def test_uses_kubelogs_config_and_says_which_file(self, tmp_path: Path) -> None:
        """Without -c, validate checks what `kubelogs run` would load, and names it."""
        config = tmp_path / "k.yaml"
        config.write_text(BASE.format(tmp=tmp_path))

        result = validate(KUBELOGS_CONFIG=str(config))

        assert 0 == result.returncode, result.stderr
        assert f"checking {config}" in result.stdout
        assert f"{config}: valid (1 source, 0 transforms, 1 sink)" in result.stdout

    def test_invalid_file_from_the_environment_exits_one(self, tmp_path: Path) -> None:
        """The looked-up file gets the same checks as one given with -c."""
        config = tmp_path / "k.yaml"
        config.write_text("bogus: 1\n")

        result = validate(KUBELOGS_CONFIG=str(config))

        assert 1 == result.returncode
        assert "bogus: unknown key" in result.stderr


class TestHints:
    def test_unknown_key_close_to_a_known_one_gets_a_suggestion(self, tmp_path: Path) -> None:
        """A typo in a component key names the key that was meant (difflib)."""
        text = BASE.format(tmp=tmp_path).replace(
            "c: {type: file, paths: [/var/log/x.log]}",
            "c: {type: kubernetes_logs, exclude_namespace: [kube-system]}",
        )

        found = problems(text, tmp_path)

        expected = ["sources.c.exclude_namespace: unknown key (did you mean `exclude_namespaces`?)"]
        assert expected == found

    def test_nested_root_keys_get_suggestions_too(self, tmp_path: Path) -> None:
        """`log.levl` -> `level`; a key nothing resembles gets no guess."""
        text = BASE.format(tmp=tmp_path) + "log: {levl: debug, zzzz: 1}\n"

        found = problems(text, tmp_path)

        assert "log.levl: unknown key (did you mean `level`?)" in found
        assert "log.zzzz: unknown key" in found

    def test_typo_in_type_is_reported_as_the_unknown_key(self, tmp_path: Path) -> None:
        """`typ: stdout` is an unknown key `typ`, not only a missing `type`."""
        text = BASE.format(tmp=tmp_path).replace(
            "s: {type: blackhole, inputs: [c]}", "s: {typ: stdout, inputs: [c]}"
        )

        found = problems(text, tmp_path)

        assert "sinks.s.typ: unknown key (did you mean `type`?)" in found
        assert any(p.startswith("sinks.s.type: missing") for p in found)

    def test_misspelled_type_name_gets_a_suggestion(self, tmp_path: Path) -> None:
        """An unknown type close to a registered one names it."""
        text = BASE.format(tmp=tmp_path).replace("type: blackhole", "type: blackhol")

        found = problems(text, tmp_path)

        assert 1 == len(found)
        assert "unknown sink type 'blackhol' (did you mean `blackhole`?)" in found[0]


class TestUserWords:
    @pytest.mark.parametrize(
        ("replace", "expected"),
        [
            (
                ("data_dir: {tmp}/data", "data_dir: 42"),
                "data_dir: 42 is not a path; write a string like /var/lib/kubelogs",
            ),
            (
                ("data_dir: {tmp}/data", "data_dir: null"),
                "data_dir: null is not a path; write a string like /var/lib/kubelogs",
            ),
            (
                ("paths: [/var/log/x.log]", "paths: [/var/log/x.log], read_from: middle"),
                "sources.c.read_from: 'middle' is not one of: beginning, end",
            ),
            (
                ("paths: [/var/log/x.log]", "paths: /var/log/x.log"),
                "sources.c.paths: '/var/log/x.log' is not a list; write [a, b] or one "
                "`- item` per line",
            ),
            (
                ("data_dir: {tmp}/data", "data_dir: /d\napi: {{enabled: maybe}}"),
                "api.enabled: 'maybe' is not true or false",
            ),
            (
                ("data_dir: {tmp}/data", "data_dir: /d\nlog: {{level: loud}}"),
                "log.level: 'loud' is not one of: debug, info, warning, error",
            ),
        ],
    )
    def test_bad_values_are_echoed_with_the_choices(
        self, tmp_path: Path, replace: tuple[str, str], expected: str
    ) -> None:
        """Never pydantic's "Input should be …": the value as written, and what fits."""
        text = BASE.replace(*replace).format(tmp=tmp_path)

        found = problems(text, tmp_path)

        assert [expected] == found
        assert not any("Input should" in p for p in found)
