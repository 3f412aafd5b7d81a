"""``{{ variable }}`` templates for spoken text, compiled once when an agent file loads.

Syntax: ``{{ name }}`` speaks the variable's value; ``{{ name | fallback }}`` speaks
``fallback`` when the variable is missing or blank. Spaces inside the braces are ignored.
Anything else between braces, or a brace pair left open, is a load-time ``TemplateError``:
whatever happens at run time, a caller must never hear a template.

Rendering is one pass over precompiled parts. Values are not re-rendered, so a dynamic
variable that happens to contain ``{{`` is spoken as given, never expanded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

_VARIABLE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_SPACES = re.compile(r"[ \t]{2,}")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"[ \t]+([,.!?;:])")


class TemplateError(ValueError):
    """A template that could speak braces or an unnamed variable."""


class _Variable(NamedTuple):
    name: str
    fallback: str | None


def is_variable_name(name: str) -> bool:
    """Whether ``name`` can be referenced as ``{{ name }}``."""
    return _NAME.fullmatch(name) is not None


class Template:
    """A compiled template. ``static`` is the text itself when there is nothing to fill in."""

    __slots__ = ("_parts", "source", "static", "variables")

    def __init__(self, source: str) -> None:
        self.source = source
        parts: list[str | _Variable] = []
        position = 0
        for match in _VARIABLE.finditer(source):
            _append_literal(parts, source[position : match.start()])
            parts.append(_parse_variable(match.group(1)))
            position = match.end()
        _append_literal(parts, source[position:])
        self._parts = tuple(parts)
        self.variables = tuple(p.name for p in parts if isinstance(p, _Variable))
        self.static: str | None = None if self.variables else source

    def render(self, scopes: Sequence[Mapping[str, Any]], missing: str = "") -> str:
        """Fill in variables, looking each up in ``scopes`` in order (first usable value wins).

        A usable value is a non-blank string or a number; anything else counts as missing,
        so structured state is never read aloud as JSON. When a variable renders empty, the
        doubled spaces and orphaned punctuation it would leave are tidied away.
        """
        if self.static is not None:
            return self.static
        out: list[str] = []
        blank = False
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = _lookup(part.name, scopes)
            if value is None:
                value = missing if part.fallback is None else part.fallback
            if not value:
                blank = True
            out.append(value)
        text = "".join(out)
        return _tidy(text) if blank else text

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


def _append_literal(parts: list[str | _Variable], literal: str) -> None:
    if "{{" in literal or "}}" in literal:
        raise TemplateError("unbalanced '{{' or '}}'")
    if literal:
        parts.append(literal)


def _parse_variable(inner: str) -> _Variable:
    if "{" in inner or "}" in inner:
        raise TemplateError(f"braces inside '{{{{{inner}}}}}'")
    name, bar, fallback = inner.partition("|")
    name = name.strip()
    if not is_variable_name(name):
        raise TemplateError(
            f"'{{{{{inner}}}}}' needs a variable name (letters, digits, '_', '.', '-')"
        )
    return _Variable(name, fallback.strip() if bar else None)


def _lookup(name: str, scopes: Sequence[Mapping[str, Any]]) -> str | None:
    for scope in scopes:
        value = scope.get(name)
        if isinstance(value, str):
            if value.strip():
                return value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    return None


def _tidy(text: str) -> str:
    text = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", _SPACES.sub(" ", text))
    return text.lstrip(" \t,;:").rstrip()
