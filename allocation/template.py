"""Initial twin and payload templates with placeholders.

A template is any JSON-like value from the policy file. Strings in it may hold placeholders:

    {registration_id}     the device's registration id
    {enrollment_group}    the enrollment group id ("" for individual enrollments)
    {hub}                 the host name of the hub chosen for the device
    {rule}                the name of the matching rule
    {match.NAME}          a named group of the rule's registration-id regex ({match.1}: numbered)
    {payload.a.b}         a field of the device's payload, by dotted path

``{{`` and ``}}`` stand for literal braces. A string that is exactly one placeholder takes the
value's own JSON type (a payload number stays a number); inside longer text a value is rendered as
text (strings as they are, anything else as JSON). Templates are compiled once, when the policy is
loaded: unknown placeholders, and numbers JSON cannot carry (TOML's ``inf`` and ``nan``), are
reported then, and rendering a template with no placeholder returns the very same (read-only)
value.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from allocation.errors import PolicyError

ROOTS = ("registration_id", "enrollment_group", "hub", "rule", "match", "payload")


@dataclass(frozen=True)
class Placeholder:
    root: str
    path: tuple[str, ...]

    def __str__(self) -> str:
        return "{" + ".".join((self.root, *self.path)) + "}"


class MissingValue(LookupError):
    """A placeholder has nothing to fill it (e.g. a payload field the device did not send)."""


@dataclass(frozen=True)
class Template:
    """A compiled template; ``render`` fills it from a mapping of root name to value."""

    value: Any
    placeholders: tuple[Placeholder, ...]

    def render(self, values: Mapping[str, Any]) -> Any:
        if not self.placeholders:
            return self.value
        return _render(self.value, values)


def compile_template(value: Any, *, source: str, location: str) -> Template:
    """Compile a policy value; every placeholder is checked against the known roots."""
    found: list[Placeholder] = []
    compiled = _compile(value, found, source=source, location=location)
    return Template(compiled, tuple(found))


@dataclass(frozen=True)
class _Text:
    """A string with placeholders: literal parts and placeholders in order."""

    parts: tuple[str | Placeholder, ...]


def _compile(value: Any, found: list[Placeholder], *, source: str, location: str) -> Any:
    if isinstance(value, dict):
        return {
            key: _compile(item, found, source=source, location=f"{location}.{key}")
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            _compile(item, found, source=source, location=f"{location}[{index}]")
            for index, item in enumerate(value)
        ]
    if isinstance(value, float) and not math.isfinite(value):
        raise PolicyError(source, location, "expected a finite number: JSON has no inf or nan")
    if not isinstance(value, str) or ("{" not in value and "}" not in value):
        return value
    parts: list[str | Placeholder] = []
    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError as error:
        raise PolicyError(
            source, location, f"bad placeholder syntax ({error}); use {{{{ for a literal brace"
        ) from None
    for literal, field, spec, conversion in parsed:
        if literal:
            if parts and isinstance(parts[-1], str):
                parts[-1] += literal
            else:
                parts.append(literal)
        if field is None:
            continue
        if spec or conversion:
            raise PolicyError(
                source, location, f"placeholder {{{field}}} may not have a format spec"
            )
        root, *path = field.split(".")
        if root not in ROOTS:
            known = ", ".join("{" + r + "}" for r in ROOTS)
            raise PolicyError(source, location, f"unknown placeholder {{{field}}}; known: {known}")
        if root in ("match", "payload") and not path:
            raise PolicyError(source, location, f"{{{root}}} needs a field: {{{root}.NAME}}")
        if root not in ("match", "payload") and path:
            raise PolicyError(source, location, f"{{{root}}} has no fields")
        placeholder = Placeholder(root, tuple(path))
        found.append(placeholder)
        parts.append(placeholder)
    if all(isinstance(part, str) for part in parts):
        return "".join(part for part in parts if isinstance(part, str))  # only escaped braces
    return _Text(tuple(parts))


def _render(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, _Text):
        if len(value.parts) == 1 and isinstance(value.parts[0], Placeholder):
            return lookup(values, value.parts[0])
        return "".join(
            part if isinstance(part, str) else _as_text(lookup(values, part))
            for part in value.parts
        )
    if isinstance(value, dict):
        return {key: _render(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(item, values) for item in value]
    return value


def lookup(values: Mapping[str, Any], placeholder: Placeholder) -> Any:
    """The value for a placeholder; ``MissingValue`` when absent."""
    if placeholder.root not in values:
        raise MissingValue(str(placeholder))
    current = values[placeholder.root]
    for step in placeholder.path:
        if not isinstance(current, Mapping) or step not in current:
            raise MissingValue(str(placeholder))
        current = current[step]
    return current


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
