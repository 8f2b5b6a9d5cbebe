"""A policy's rules as values: how a rule matches a device, and what it decides. Pure.

Built by `allocation.policy` from the policy file, indexed by `allocation.matching`, applied by
`allocation.engine`. Registration ids are compared in their canonical form
(`sas.registration_id`); regexes run on RE2 (see `allocation.policy`).
"""

from __future__ import annotations

import enum
import fnmatch
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from allocation.template import Placeholder, Template

DEFAULT_RULE_NAME = "(default)"


class Strategy(enum.Enum):
    HASH = "hash"
    STICKY = "sticky"
    STATIC = "static"


class IdMatchKind(enum.Enum):
    PREFIX = "prefix"
    SUFFIX = "suffix"
    EXACT = "exact"
    GLOB = "glob"
    REGEX = "regex"


class Match(Protocol):
    """What a match of ``re`` or RE2 offers the engine."""

    def groups(self) -> tuple[str | None, ...]: ...

    def groupdict(self) -> dict[str, str | None]: ...


class Pattern(Protocol):
    """A compiled regex: Python's ``re`` for globs, RE2 for the policy's regexes."""

    @property
    def groups(self) -> int: ...

    @property
    def groupindex(self) -> Mapping[str, int]: ...

    def fullmatch(self, text: str) -> Match | None: ...

    def search(self, text: str) -> Match | None: ...


UNSET: Any = object()  # a payload condition without `equals`


@dataclass(frozen=True, kw_only=True)
class IdMatcher:
    """A condition on the registration id. ``text`` is canonical (``canonical_registration_id``)
    for prefix, suffix and exact, and ``match`` gets the canonical id beside the one sent."""

    kind: IdMatchKind
    text: str
    regex: Pattern | None = None

    def match(self, folded_id: str, registration_id: str) -> dict[str, str] | None:
        """Captures (empty without a regex) when the id matches, else None."""
        if self.kind is IdMatchKind.PREFIX:
            return {} if folded_id.startswith(self.text) else None
        if self.kind is IdMatchKind.SUFFIX:
            return {} if folded_id.endswith(self.text) else None
        if self.kind is IdMatchKind.EXACT:
            return {} if folded_id == self.text else None
        if self.regex is None:  # the loader gives every glob and regex matcher its pattern
            return None
        found = self.regex.fullmatch(registration_id)
        if found is None:
            return None
        captures = {str(i): g for i, g in enumerate(found.groups(), start=1) if g is not None}
        captures.update({k: v for k, v in found.groupdict().items() if v is not None})
        return captures


@dataclass(frozen=True, kw_only=True)
class PayloadCondition:
    path: tuple[str, ...]
    equals: Any = UNSET
    pattern: Pattern | None = None
    exists: bool | None = None

    def holds(self, payload: Any) -> bool:
        present, value = True, payload
        for step in self.path:
            if not isinstance(value, Mapping) or step not in value:
                present = False
                break
            value = value[step]
        if self.exists is not None:
            return present == self.exists
        if not present:
            return False
        if self.pattern is not None:
            text = value if isinstance(value, str) else str(value)
            return self.pattern.search(text) is not None
        # JSON equality: True must not equal 1.
        return type(value) is type(self.equals) and bool(value == self.equals)


@dataclass(frozen=True, kw_only=True, eq=False)
class Rule:
    """One rule. Identity equality: rules key the engine's caches."""

    name: str
    position: int
    registration_id: IdMatcher | None = None
    enrollment_groups: frozenset[str] | None = None  # case-folded
    reprovisioning: bool | None = None
    payload_conditions: tuple[PayloadCondition, ...] = ()
    deny: str | None = None
    hub_patterns: tuple[str, ...] = ("*",)
    strategy: Strategy = Strategy.HASH
    initial_twin: Template | None = None
    payload: Template | None = None
    required_payload: tuple[Placeholder, ...] = ()


@functools.lru_cache(maxsize=1024)
def host_glob(pattern: str) -> re.Pattern[str]:
    """A case-insensitive host-name glob, compiled once."""
    return re.compile(fnmatch.translate(pattern), re.IGNORECASE)
