"""Tests for emulator.dps.edits: key and enabled edits, and overrides across restarts."""

from __future__ import annotations

import dataclasses

import pytest

from emulator.config import EmulatorConfig, parse_config
from emulator.dps.edits import (
    EnrollmentKind,
    KeySlot,
    UnknownEnrollment,
    apply_overrides,
    find_enrollment,
    overrides,
    with_enabled,
    with_key,
)

PRIMARY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
SECONDARY = "iZlcsgZYcqfw02/f1mcrIYTcbCmWZSgIgQ4ED9Kp/fE="
NEW_KEY = "OSANXEslinwdWI7CugTZIIMS97VdG65m3pD753neq7E="
GROUP = EnrollmentKind.GROUP
INDIVIDUAL = EnrollmentKind.INDIVIDUAL


def config() -> EmulatorConfig:
    return parse_config(
        {
            "hubs": [{"name": "toasters.azure-devices.net"}],
            "enrollment_groups": [
                {"id": "contoso", "primary_key": PRIMARY, "secondary_key": SECONDARY},
                {"id": "other", "primary_key": SECONDARY, "secondary_key": PRIMARY},
            ],
            "individual_enrollments": [
                {"registration_id": "dev-1", "primary_key": PRIMARY, "secondary_key": SECONDARY}
            ],
        },
        source="e.toml",
    )


def test_with_key_replaces_one_slot_of_one_enrollment() -> None:
    """A new primary key changes that enrollment's primary only; the rest stays identical."""
    before = config()
    after = with_key(before, GROUP, "CONTOSO", KeySlot.PRIMARY, NEW_KEY)
    assert find_enrollment(after, GROUP, "contoso").keys == (NEW_KEY, SECONDARY)
    assert after.enrollment_groups[1] is before.enrollment_groups[1]
    assert after.individual_enrollments == before.individual_enrollments
    secondary = with_key(before, INDIVIDUAL, "dev-1", KeySlot.SECONDARY, NEW_KEY)
    assert find_enrollment(secondary, INDIVIDUAL, "dev-1").keys == (PRIMARY, NEW_KEY)


def test_with_enabled_and_unknown_enrollments() -> None:
    """Disabling flips `enabled`; an unknown id or the wrong kind is UnknownEnrollment (404)."""
    disabled = with_enabled(config(), GROUP, "other", False)
    assert not find_enrollment(disabled, GROUP, "other").enabled
    with pytest.raises(UnknownEnrollment, match="no individual enrollment 'contoso'") as raised:
        with_enabled(config(), INDIVIDUAL, "contoso", False)
    assert raised.value.status == 404


def test_overrides_round_trip_onto_the_same_file() -> None:
    """Edits become overrides that, applied to the unchanged file, give the edited config."""
    loaded = config()
    edited = with_enabled(
        with_key(loaded, GROUP, "contoso", KeySlot.PRIMARY, NEW_KEY), INDIVIDUAL, "dev-1", False
    )
    found = overrides(loaded, edited)
    assert [(edit.kind, edit.id) for edit in found] == [(GROUP, "contoso"), (INDIVIDUAL, "dev-1")]
    restored, stale = apply_overrides(loaded, found)
    assert (restored, stale) == (edited, [])
    assert overrides(loaded, loaded) == []


def test_file_edited_since_wins_over_a_stale_override() -> None:
    """When the file's entry changed after the edit, the override is skipped and reported."""
    loaded = config()
    found = overrides(loaded, with_key(loaded, GROUP, "contoso", KeySlot.PRIMARY, NEW_KEY))
    group = dataclasses.replace(loaded.enrollment_groups[0], secondary_key=NEW_KEY)
    changed_file = dataclasses.replace(
        loaded, enrollment_groups=(group, loaded.enrollment_groups[1])
    )
    restored, stale = apply_overrides(changed_file, found)
    assert restored == changed_file
    assert [edit.id for edit in stale] == ["contoso"]


def test_override_repr_hides_keys() -> None:
    """An override's repr never shows its keys."""
    loaded = config()
    (edit,) = overrides(loaded, with_key(loaded, GROUP, "contoso", KeySlot.PRIMARY, NEW_KEY))
    assert NEW_KEY not in repr(edit)
    assert SECONDARY not in repr(edit)
