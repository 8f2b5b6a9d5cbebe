"""Which rules can apply to a request, without trying every rule.

Rules are tried in file order and the first that matches wins. Trying a thousand rules one by one
costs far more than the 50 µs a decision may take, so rules are indexed by the condition that is
cheapest to look up:

    registration_id exact            dict: folded id -> rules
    registration_id prefix / suffix  per distinct length L: dict of the id's first / last L chars
    glob / regex                     by the literal text they must start (or, for globs, end) with
    enrollment_group (no id matcher) dict: folded group id -> rules
    anything else (payload-only, catch-all, patterns with no literal part)   always a candidate

Literal parts of globs and regexes are indexed only when they are ASCII, where case-folding and
the regex engine's IGNORECASE agree.

A lookup collects the candidate rule positions from each index, merges them in file order, and
the engine then checks each candidate's full set of conditions. The index only narrows: it never
decides a match, so a rule found here may still fail its other conditions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from allocation.rules import IdMatchKind, Rule


class RuleIndex:
    """Candidate rules for a registration id and enrollment group, in file order."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self._rules = tuple(rules)
        exact: dict[str, list[int]] = defaultdict(list)
        prefix: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        suffix: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        group: dict[str, list[int]] = defaultdict(list)
        always: list[int] = []
        for position, rule in enumerate(self._rules):
            matcher = rule.registration_id
            if matcher is not None and matcher.kind is IdMatchKind.EXACT:
                exact[matcher.text].append(position)
            elif matcher is not None and matcher.kind is IdMatchKind.PREFIX:
                prefix[len(matcher.text)][matcher.text].append(position)
            elif matcher is not None and matcher.kind is IdMatchKind.SUFFIX:
                suffix[len(matcher.text)][matcher.text].append(position)
            elif matcher is not None and (head := _literal_head(matcher.kind, matcher.text)):
                prefix[len(head)][head].append(position)
            elif matcher is not None and (tail := _literal_tail(matcher.kind, matcher.text)):
                suffix[len(tail)][tail].append(position)
            elif matcher is None and rule.enrollment_groups is not None:
                for group_id in rule.enrollment_groups:
                    group[group_id].append(position)
            else:
                always.append(position)
        self._exact = {k: tuple(v) for k, v in exact.items()}
        self._prefix = tuple((n, {k: tuple(v) for k, v in t.items()}) for n, t in prefix.items())
        self._suffix = tuple((n, {k: tuple(v) for k, v in t.items()}) for n, t in suffix.items())
        self._group = {k: tuple(v) for k, v in group.items()}
        self._always = tuple(always)

    def candidates(self, folded_id: str, folded_group: str | None) -> Iterable[Rule]:
        """Rules that may match, in file order (a rule appears at most once)."""
        found: list[tuple[int, ...]] = [self._always]
        if (hit := self._exact.get(folded_id)) is not None:
            found.append(hit)
        for length, table in self._prefix:
            if (hit := table.get(folded_id[:length])) is not None:
                found.append(hit)
        for length, table in self._suffix:
            if length <= len(folded_id) and (hit := table.get(folded_id[-length:])) is not None:
                found.append(hit)
        if folded_group is not None and (hit := self._group.get(folded_group)) is not None:
            found.append(hit)
        positions = found[0] if len(found) == 1 else sorted({p for hits in found for p in hits})
        rules = self._rules
        return (rules[p] for p in positions)


_GLOB_SPECIALS = frozenset("*?[]")
_REGEX_SPECIALS = frozenset(".^$*+?{}[]\\|()")
_QUANTIFIERS = frozenset("*+?{")


def _literal_head(kind: IdMatchKind, pattern: str) -> str:
    """The folded literal text every id matching a glob or regex starts with ("" if unsure)."""
    if kind is IdMatchKind.GLOB:
        head = pattern[
            : next((i for i, c in enumerate(pattern) if c in _GLOB_SPECIALS), len(pattern))
        ]
    elif kind is IdMatchKind.REGEX:
        body = pattern.removeprefix("^")
        end = next((i for i, c in enumerate(body) if c in _REGEX_SPECIALS), len(body))
        head = body[:end]
        if end < len(body) and body[end] in _QUANTIFIERS:
            head = head[:-1]  # "ab*" only promises "a"
        if "|" in body:
            head = ""  # an alternation may start elsewhere
    else:
        return ""
    return head.casefold() if head.isascii() else ""


def _literal_tail(kind: IdMatchKind, pattern: str) -> str:
    """The folded literal text every id matching a glob ends with ("" if unsure)."""
    if kind is not IdMatchKind.GLOB:
        return ""
    start = max((i for i, c in enumerate(pattern) if c in _GLOB_SPECIALS), default=-1) + 1
    tail = pattern[start:]
    return tail.casefold() if tail.isascii() else ""
