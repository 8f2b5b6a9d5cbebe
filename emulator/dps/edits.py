"""Operator edits to enrollments: regenerate a key, enable or disable. Pure: config in, config out.

An enrollment is addressed by kind (`group` -> `EnrollmentGroup.id`, `individual` ->
`IndividualEnrollment.registration_id`, both case-insensitive) and changed with
`dataclasses.replace`, so the rest of the configuration stays as it was. New keys come from the
caller (`config.generate_key` in the shell), so nothing here is random.

Edits survive a restart as overrides in the state file: `overrides(loaded, current)` lists the
enrollments whose keys or `enabled` differ from the configuration file, each with a fingerprint
of the file's entry at that time; `apply_overrides` puts them back only while the file still has
that entry unchanged. When someone has edited the entry in the file since, the file wins (the
operator's newer intent) and the override is reported as stale.

Errors:

    EnrollmentEditError      base; `status` is the admin API status
    └── UnknownEnrollment    no enrollment of that kind and id (404)
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from enum import StrEnum

from emulator.config import EmulatorConfig
from emulator.dps.enrollments import EnrollmentGroup, IndividualEnrollment

__all__ = [
    "EnrollmentEditError",
    "EnrollmentKind",
    "EnrollmentOverride",
    "KeySlot",
    "UnknownEnrollment",
    "apply_overrides",
    "find_enrollment",
    "overrides",
    "with_enabled",
    "with_key",
]

Enrollment = EnrollmentGroup | IndividualEnrollment


class EnrollmentEditError(Exception):
    """Base of the edit errors."""

    status = 400


class UnknownEnrollment(EnrollmentEditError):
    """No enrollment of that kind has that id."""

    status = 404


class EnrollmentKind(StrEnum):
    """Which section an enrollment is in."""

    GROUP = "group"
    INDIVIDUAL = "individual"


class KeySlot(StrEnum):
    """Which of the two keys."""

    PRIMARY = "primary"
    SECONDARY = "secondary"


@dataclass(frozen=True, kw_only=True)
class EnrollmentOverride:
    """An enrollment's keys and state as edited, and the file entry they were edited from."""

    kind: EnrollmentKind
    id: str
    primary_key: str = field(repr=False)
    secondary_key: str = field(repr=False)
    enabled: bool
    base: str  # fingerprint of the configuration file's entry the edit started from


def enrollment_id(enrollment: Enrollment) -> tuple[EnrollmentKind, str]:
    """The kind and id that address an enrollment."""
    if isinstance(enrollment, EnrollmentGroup):
        return EnrollmentKind.GROUP, enrollment.id
    return EnrollmentKind.INDIVIDUAL, enrollment.registration_id


def find_enrollment(config: EmulatorConfig, kind: EnrollmentKind, wanted: str) -> Enrollment:
    """The enrollment of that kind and id, or UnknownEnrollment."""
    entries: tuple[Enrollment, ...] = (
        config.enrollment_groups if kind is EnrollmentKind.GROUP else config.individual_enrollments
    )
    for enrollment in entries:
        if enrollment_id(enrollment)[1].lower() == wanted.lower():
            return enrollment
    raise UnknownEnrollment(f"no {kind.value} enrollment {wanted!r}")


def with_key(
    config: EmulatorConfig, kind: EnrollmentKind, wanted: str, slot: KeySlot, key: str
) -> EmulatorConfig:
    """The configuration with one enrollment key replaced."""
    enrollment = find_enrollment(config, kind, wanted)
    if slot is KeySlot.PRIMARY:
        return _replace(config, enrollment, dataclasses.replace(enrollment, primary_key=key))
    return _replace(config, enrollment, dataclasses.replace(enrollment, secondary_key=key))


def with_enabled(
    config: EmulatorConfig, kind: EnrollmentKind, wanted: str, enabled: bool
) -> EmulatorConfig:
    """The configuration with one enrollment enabled or disabled."""
    enrollment = find_enrollment(config, kind, wanted)
    return _replace(config, enrollment, dataclasses.replace(enrollment, enabled=enabled))


def overrides(loaded: EmulatorConfig, current: EmulatorConfig) -> list[EnrollmentOverride]:
    """The enrollments of `current` whose keys or `enabled` differ from `loaded` (the file)."""
    found: list[EnrollmentOverride] = []
    entries: tuple[Enrollment, ...] = (*current.enrollment_groups, *current.individual_enrollments)
    for enrollment in entries:
        kind, name = enrollment_id(enrollment)
        original = find_enrollment(loaded, kind, name)
        if _editable(original) != _editable(enrollment):
            found.append(
                EnrollmentOverride(
                    kind=kind,
                    id=name,
                    primary_key=enrollment.primary_key,
                    secondary_key=enrollment.secondary_key,
                    enabled=enrollment.enabled,
                    base=fingerprint(original),
                )
            )
    return found


def apply_overrides(
    loaded: EmulatorConfig, edits: list[EnrollmentOverride]
) -> tuple[EmulatorConfig, list[EnrollmentOverride]]:
    """`loaded` with the edits whose base entry is unchanged; also the stale (skipped) edits."""
    config = loaded
    stale: list[EnrollmentOverride] = []
    for edit in edits:
        try:
            original = find_enrollment(loaded, edit.kind, edit.id)
        except UnknownEnrollment:
            stale.append(edit)
            continue
        if fingerprint(original) != edit.base:
            stale.append(edit)
            continue
        edited = dataclasses.replace(
            original,
            primary_key=edit.primary_key,
            secondary_key=edit.secondary_key,
            enabled=edit.enabled,
        )
        config = _replace(config, original, edited)
    return config, stale


def fingerprint(enrollment: Enrollment) -> str:
    """A digest of what an edit can change, to notice later edits of the file (not reversible)."""
    kind, name = enrollment_id(enrollment)
    primary, secondary, enabled = _editable(enrollment)
    text = "\n".join((kind.value, name.lower(), primary, secondary, str(enabled)))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _editable(enrollment: Enrollment) -> tuple[str, str, bool]:
    return (enrollment.primary_key, enrollment.secondary_key, enrollment.enabled)


def _replace(config: EmulatorConfig, old: Enrollment, new: Enrollment) -> EmulatorConfig:
    if isinstance(new, EnrollmentGroup):
        groups = tuple(new if entry is old else entry for entry in config.enrollment_groups)
        return dataclasses.replace(config, enrollment_groups=groups)
    individuals = tuple(new if entry is old else entry for entry in config.individual_enrollments)
    return dataclasses.replace(config, individual_enrollments=individuals)
