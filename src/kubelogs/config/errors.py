"""Configuration errors.

ConfigError
 +-- ConfigFileError      the file cannot be read or is not valid YAML (with line/column)
 +-- ConfigInvalid        one or more `path.to.key: message` problems, all reported at once
"""

from __future__ import annotations


class ConfigError(Exception):
    """Something is wrong with the configuration; the message is for the user."""


class ConfigFileError(ConfigError):
    pass


class ConfigInvalid(ConfigError):
    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))
