"""TODO docstring"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from allocation.errors import PolicyError
from allocation.matching import RuleIndex
from allocation.rules import (
    DEFAULT_RULE_NAME,
    IdMatcher,
    IdMatchKind,
    Pattern,
    PayloadCondition,
    Rule,
    Strategy,
    host_glob,
)
from allocation.template import Placeholder, compile_template
from sas.registration_id import canonical_registration_id

# The file's spellings of a strategy; "first" is an alias of "static".
STRATEGY_NAMES = {
    "hash": Strategy.HASH,
    "sticky": Strategy.STICKY,
    "static": Strategy.STATIC,
    "first": Strategy.STATIC,
}


@dataclass(frozen=True, kw_only=True, eq=False)
class Policy:
    """A loaded policy. Identity equality: policies key the engine's caches."""

    source: str
    rules: tuple[Rule, ...]  # the file's rules, then the implicit default rule
    index: RuleIndex = field(compare=False, repr=False)
    weights: tuple[tuple[str, float], ...] = ()

    def weight(self, hub: str) -> float:
        for pattern, weight in self.weights:
            if host_glob(pattern).fullmatch(hub):
                return weight
        return 1.0


def default_policy() -> Policy:
    """No policy configured: DPS's ``hashed`` across linkedHubs, consistently; nothing echoed."""
    return _finish("(no policy file)", (), (), Strategy.HASH, unmatched="hash", reason="")


def load_policy(text: str, *, source: str) -> Policy:
    """Parse TOML text; ``source`` (the file name) is used in error messages."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(source, "file", f"not valid TOML: {error}") from None
    return parse_policy(document, source=source)


def parse_policy(document: Mapping[str, Any], *, source: str) -> Policy:
    """Validate a decoded policy document into a ``Policy``."""
    _only(document, {"version", "defaults", "weights", "rules"}, source, "top level")
    if document.get("version", 1) != 1:
        raise PolicyError(source, "version", "expected 1, the only policy format version")

    defaults = _table(document.get("defaults", {}), source, "defaults")
    _only(defaults, {"strategy", "unmatched", "unmatched_reason"}, source, "defaults")
    strategy = _strategy(defaults.get("strategy", "hash"), source, "defaults.strategy")
    unmatched = defaults.get("unmatched", "deny")
    if unmatched not in ("deny", "hash"):
        raise PolicyError(
            source, "defaults.unmatched", f'expected "deny" or "hash", got {unmatched!r}'
        )
    reason = _string(
        defaults.get("unmatched_reason", "no allocation rule matches this device"),
        source,
        "defaults.unmatched_reason",
    )

    weights = []
    for pattern, weight in _table(document.get("weights", {}), source, "weights").items():
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not 0 <= weight <= 100
        ):
            raise PolicyError(source, f"weights.{pattern!r}", "expected a number from 0 to 100")
        weights.append((pattern, float(weight)))

    rules_document = document.get("rules", [])
    if not isinstance(rules_document, list):
        raise PolicyError(source, "rules", "expected an array of tables: [[rules]]")
    rules = tuple(
        _rule(item, position, strategy, source) for position, item in enumerate(rules_document)
    )
    names = [rule.name for rule in rules]
    for position, name in enumerate(names):
        if name in names[:position]:
            raise PolicyError(
                source, f"rules[{position}].name", f"{name!r} is used by an earlier rule"
            )
    return _finish(source, rules, tuple(weights), strategy, unmatched=unmatched, reason=reason)


def _finish(
    source: str,
    rules: tuple[Rule, ...],
    weights: tuple[tuple[str, float], ...],
    strategy: Strategy,
    *,
    unmatched: str,
    reason: str,
) -> Policy:
    fallback = Rule(
        name=DEFAULT_RULE_NAME,
        position=len(rules),
        deny=reason if unmatched == "deny" else None,
        strategy=strategy,
    )
    everything = (*rules, fallback)
    return Policy(source=source, rules=everything, weights=weights, index=RuleIndex(everything))


def _rule(item: object, position: int, default_strategy: Strategy, source: str) -> Rule:
    where = f"rules[{position}]"
    rule = _table(item, source, where)
    name = _string(rule.get("name", where), source, f"{where}.name")
    where = f"rules[{position}] ({name})" if "name" in rule else where
    _only(
        rule,
        {"name", "match", "deny", "hubs", "strategy", "initial_twin", "payload"},
        source,
        where,
    )
    conditions = _table(rule.get("match", {}), source, f"{where}.match")
    _only(
        conditions,
        {"registration_id", "enrollment_group", "reprovisioning", "payload"},
        source,
        f"{where}.match",
    )

    id_matcher = None
    if "registration_id" in conditions:
        id_matcher = _id_matcher(
            conditions["registration_id"], source, f"{where}.match.registration_id"
        )

    groups = None
    if "enrollment_group" in conditions:
        raw = conditions["enrollment_group"]
        listed = [raw] if isinstance(raw, str) else raw
        if (
            not isinstance(listed, list)
            or not listed
            or not all(isinstance(g, str) and g for g in listed)
        ):
            raise PolicyError(
                source, f"{where}.match.enrollment_group", "expected a group id or a list of them"
            )
        groups = frozenset(g.casefold() for g in listed)

    reprovisioning = conditions.get("reprovisioning")
    if reprovisioning is not None and not isinstance(reprovisioning, bool):
        raise PolicyError(source, f"{where}.match.reprovisioning", "expected true or false")

    payload_conditions = tuple(
        _payload_condition(path, spec, source, f"{where}.match.payload.{path}")
        for path, spec in _table(
            conditions.get("payload", {}), source, f"{where}.match.payload"
        ).items()
    )

    if "deny" in rule:
        extra = sorted({"hubs", "strategy", "initial_twin", "payload"} & rule.keys())
        if extra:
            raise PolicyError(
                source, f"{where}.deny", f"a deny rule cannot also set {', '.join(extra)}"
            )
        return Rule(
            name=name,
            position=position,
            registration_id=id_matcher,
            enrollment_groups=groups,
            reprovisioning=reprovisioning,
            payload_conditions=payload_conditions,
            deny=_string(rule["deny"], source, f"{where}.deny"),
        )

    hubs = rule.get("hubs", ["*"])
    if not isinstance(hubs, list) or not hubs or not all(isinstance(h, str) and h for h in hubs):
        raise PolicyError(source, f"{where}.hubs", "expected a non-empty list of host-name globs")
    strategy = _strategy(rule.get("strategy", default_strategy.value), source, f"{where}.strategy")

    initial_twin = None
    if "initial_twin" in rule:
        twin = _table(rule["initial_twin"], source, f"{where}.initial_twin")
        _only(twin, {"tags", "desired"}, source, f"{where}.initial_twin")
        shaped = {
            "tags": _table(twin.get("tags", {}), source, f"{where}.initial_twin.tags"),
            "properties": {
                "desired": _table(twin.get("desired", {}), source, f"{where}.initial_twin.desired")
            },
        }
        initial_twin = compile_template(shaped, source=source, location=f"{where}.initial_twin")
    payload = None
    if "payload" in rule:
        payload = compile_template(rule["payload"], source=source, location=f"{where}.payload")

    placeholders = [
        *(initial_twin.placeholders if initial_twin else ()),
        *(payload.placeholders if payload else ()),
    ]
    for placeholder in placeholders:
        if placeholder.root == "match":
            _check_capture(placeholder, id_matcher, source, where)

    return Rule(
        name=name,
        position=position,
        registration_id=id_matcher,
        enrollment_groups=groups,
        reprovisioning=reprovisioning,
        payload_conditions=payload_conditions,
        hub_patterns=tuple(hubs),
        strategy=strategy,
        initial_twin=initial_twin,
        payload=payload,
        required_payload=tuple(dict.fromkeys(p for p in placeholders if p.root == "payload")),
    )


def _id_matcher(spec: object, source: str, where: str) -> IdMatcher:
    table = _table(spec, source, where)
    kinds = [kind for kind in IdMatchKind if kind.value in table]
    if len(kinds) != 1 or len(table) != 1:
        raise PolicyError(
            source, where, "expected exactly one of prefix, suffix, exact, glob, regex"
        )
    kind = kinds[0]
    text = _string(table[kind.value], source, f"{where}.{kind.value}")
    if kind is IdMatchKind.GLOB:
        return IdMatcher(
            kind=kind, text=text, regex=re.compile(fnmatch.translate(text), re.IGNORECASE)
        )
    if kind is IdMatchKind.REGEX:
        return IdMatcher(
            kind=kind,
            text=text,
            regex=_compile_regex(text, source, f"{where}.regex", case_sensitive=False),
        )
    return IdMatcher(kind=kind, text=canonical_registration_id(text))


def _payload_condition(path: str, spec: object, source: str, where: str) -> PayloadCondition:
    steps = tuple(path.split("."))
    if not all(steps):
        raise PolicyError(source, where, "expected a dotted path like a.b.c")
    if not isinstance(spec, dict):
        return PayloadCondition(path=steps, equals=spec)
    if len(spec) != 1 or next(iter(spec)) not in ("equals", "matches", "exists"):
        raise PolicyError(
            source, where, "expected a value, or a table with one of equals, matches, exists"
        )
    ((operator, operand),) = spec.items()
    if operator == "equals":
        return PayloadCondition(path=steps, equals=operand)
    if operator == "exists":
        if not isinstance(operand, bool):
            raise PolicyError(source, f"{where}.exists", "expected true or false")
        return PayloadCondition(path=steps, exists=operand)
    pattern = _string(operand, source, f"{where}.matches")
    return PayloadCondition(
        path=steps,
        pattern=_compile_regex(pattern, source, f"{where}.matches", case_sensitive=True),
    )


def _check_capture(
    placeholder: Placeholder, matcher: IdMatcher | None, source: str, where: str
) -> None:
    name = placeholder.path[0]
    if matcher is None or matcher.regex is None or matcher.kind is not IdMatchKind.REGEX:
        raise PolicyError(source, where, f"{placeholder} needs match.registration_id to be a regex")
    groups = matcher.regex.groupindex
    if len(placeholder.path) != 1 or not (
        name in groups or (name.isdigit() and 1 <= int(name) <= matcher.regex.groups)
    ):
        raise PolicyError(
            source, where, f"{placeholder} names no group of the registration_id regex"
        )


def _strategy(value: object, source: str, where: str) -> Strategy:
    if not isinstance(value, str) or value not in STRATEGY_NAMES:
        raise PolicyError(
            source, where, f"expected one of {', '.join(STRATEGY_NAMES)}, got {value!r}"
        )
    return STRATEGY_NAMES[value]


def _table(value: object, source: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PolicyError(source, where, "expected a table")
    return value


def _string(value: object, source: str, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise PolicyError(source, where, "expected a non-empty string")
    return value


def _only(table: Mapping[str, Any], allowed: set[str], source: str, where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise PolicyError(
            source,
            where,
            f"unknown key {unknown[0]!r}; expected one of {', '.join(sorted(allowed))}",
        )


def _compile_regex(pattern: str, source: str, where: str, *, case_sensitive: bool) -> Pattern:
    """Compile a policy regex with RE2 (linear-time matching; see the module docstring)."""
    import re2  # noqa: PLC0415 -- loaded with the policy on the first request, not at import

    options = re2.Options()
    options.case_sensitive = case_sensitive
    options.log_errors = False  # RE2 would print to stderr; the error is ours to report
    try:
        compiled: Pattern = re2.compile(pattern, options)
    except re2.error as error:
        detail = error.args[0] if error.args else ""
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise PolicyError(
            source,
            where,
            f"not a regular expression RE2 accepts ({detail}); RE2 has no backreferences "
            "or lookarounds",
        ) from None
    return compiled
