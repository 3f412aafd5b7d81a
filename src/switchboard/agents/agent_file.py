"""An agent file (YAML or TOML) read into a mapping, and the error that names its field.

Every agent implementation validates its part of the file and raises ``AgentFileError``
naming the file and the field, so a typo stops the server at startup instead of surfacing
as a silent caller. Duplicate keys are errors too (plain YAML keeps the last one).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import msgspec
import yaml

YAML_SUFFIXES = frozenset({".yaml", ".yml"})
TOML_SUFFIXES = frozenset({".toml"})

_MSGSPEC_LOCATION = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<where>[^`]*)`)?$", re.DOTALL)
_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`$")
_MISSING_FIELD = re.compile(r"^Object missing required field `(?P<name>[^`]*)`$")


class AgentFileError(ValueError):
    """An agent file that cannot be used, with where to look: the file and the field."""

    def __init__(self, path: Path | None, field: str | None, reason: str) -> None:
        self.path = path
        self.field = field
        self.reason = reason
        where = ": ".join(str(p) for p in (path, field) if p)
        super().__init__(f"{where}: {reason}" if where else reason)

    @classmethod
    def from_validation(cls, path: Path | None, error: msgspec.ValidationError) -> AgentFileError:
        """Restate a msgspec error (``... - at `$.intents[0]```) as file + field path."""
        text = str(error)
        message, where = text, ""
        match = _MSGSPEC_LOCATION.match(text)
        if match is not None:
            message, where = match.group("message"), (match.group("where") or "").lstrip(".")
        for pattern, reason in (
            (_UNKNOWN_FIELD, "unknown field"),
            (_MISSING_FIELD, "required, but missing"),
        ):
            named = pattern.match(message)
            if named is not None:
                field = f"{where}.{named.group('name')}" if where else named.group("name")
                return cls(path, field, reason)
        if message.endswith("got `bool`"):
            message += " (YAML reads unquoted yes/no/on/off as booleans: quote them)"
        return cls(path, where or None, message)


def read_agent_file(path: Path) -> dict[str, Any]:
    """Parse an agent file into a mapping, without interpreting it."""
    suffix = path.suffix.lower()
    if suffix not in YAML_SUFFIXES | TOML_SUFFIXES:
        raise AgentFileError(path, None, "agent files end in .yaml, .yml or .toml")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AgentFileError(path, None, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentFileError(path, None, f"cannot read: {exc}") from exc
    if suffix in TOML_SUFFIXES:
        try:
            data: object = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise AgentFileError(path, None, f"invalid TOML: {exc}") from exc
    else:
        try:
            data = yaml.load(text, Loader=_StrictLoader)
        except yaml.YAMLError as exc:
            raise AgentFileError(path, None, f"invalid YAML: {_describe(exc)}") from exc
    if not isinstance(data, dict):
        raise AgentFileError(path, None, "the file must hold a mapping (key: value) at the top")
    return data


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _describe(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = exc.problem or str(exc)
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(exc)
