"""Tests for emulator.config.parse: values, defaults and validation of the configuration."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.config import ConfigError, EmulatorConfig, parse_config
from emulator.dps.enrollments import Allocation, Reprovision
from emulator.hub.presence import ConnectionEvents, PresencePolicy
from emulator.hub.twin import InitialTwin
from tests.emulator.config.example import KEY_A, KEY_B, WEBHOOK, example
from tests.strategies import json_values


def test_example_parses_into_values() -> None:
    """The documented example becomes the expected frozen values."""
    config = parse_config(example(), source="emulator.toml")
    assert config.dps.id_scope == "0ne00000001"
    assert config.hubs == ("toasters.azure-devices.net", "heatpumps.azure-devices.net")
    (group,) = config.enrollment_groups
    assert (group.id, group.allocation, group.reprovision) == (
        "contoso-custom",
        Allocation.CUSTOM,
        Reprovision.MIGRATE,
    )
    assert group.webhook_url == WEBHOOK
    assert group.initial_twin == InitialTwin(tags={"site": "a"}, desired={"rate": 5})
    (individual,) = config.individual_enrollments
    assert (individual.registration_id, individual.device_id) == ("dev-42", "dev-42")
    assert individual.hubs == config.hubs


def test_defaults_fill_optional_fields() -> None:
    """Without [dps] and optional fields the documented defaults apply."""
    config = parse_config(
        {
            "hubs": [{"name": "h.azure-devices.net"}],
            "enrollment_groups": [{"id": "g", "primary_key": KEY_A, "secondary_key": KEY_B}],
        },
        source="c.toml",
    )
    assert (config.dps.id_scope, config.dps.host) == (
        "0ne00000001",
        "global.azure-devices-provisioning.net",
    )
    (group,) = config.enrollment_groups
    assert (group.allocation, group.reprovision, group.enabled, group.initial_twin) == (
        Allocation.HASHED,
        Reprovision.MIGRATE,
        True,
        None,
    )
    assert config.presence == PresencePolicy(mode=ConnectionEvents.SNAPSHOT, interval=60.0)


def test_connection_events_and_snapshot_interval_are_read_from_events() -> None:
    """`[events] connection_events` and `snapshot_interval` become the hubs' presence policy."""
    data = example()
    data["events"] = {"connection_events": "immediate", "snapshot_interval": 2.5}
    config = parse_config(data, source="emulator.toml")
    assert config.presence == PresencePolicy(mode=ConnectionEvents.IMMEDIATE, interval=2.5)


@settings(max_examples=150, deadline=None)
@given(mode=json_values, interval=json_values)
def test_any_events_values_parse_or_fail_naming_the_field(mode: object, interval: object) -> None:
    """Whatever TOML-like values the two fields hold: a valid policy, or a ConfigError naming
    `[events]` and the field; never another exception."""
    data = example()
    data["events"] = {"connection_events": mode, "snapshot_interval": interval}
    outcome: EmulatorConfig | ConfigError
    try:
        outcome = parse_config(data, source="emulator.toml")
    except ConfigError as error:
        outcome = error
    if isinstance(outcome, ConfigError):
        assert outcome.location in ("[events]: connection_events", "[events]: snapshot_interval")
    else:
        assert outcome.presence.mode.value == mode
        assert 0 < outcome.presence.interval <= 3600


@given(st.sampled_from(["snapshot", "immediate"]), st.floats(0.001, 3600))
def test_valid_events_values_always_parse(mode: str, interval: float) -> None:
    """Every documented mode with any interval in (0, 3600] is accepted as given."""
    data = example()
    data["events"] = {"connection_events": mode, "snapshot_interval": interval}
    presence = parse_config(data, source="emulator.toml").presence
    assert (presence.mode.value, presence.interval) == (mode, interval)


def test_reprovision_policy_maps_to_dps_flags() -> None:
    """Each reprovision value maps to DPS's (updateHubAssignment, migrateDeviceData)."""
    flags = {
        policy: (policy.update_hub_assignment, policy.migrate_device_data) for policy in Reprovision
    }
    assert flags == {
        Reprovision.MIGRATE: (True, True),
        Reprovision.RESET: (True, False),
        Reprovision.NEVER: (False, False),
    }


def _broken(path: tuple[Any, ...], value: object) -> dict[str, Any]:
    data = copy.deepcopy(example())
    target: Any = data
    for step in path[:-1]:
        target = target[step]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "location"),
    [
        (("dps", "id_scope"), "0ne/1", "[dps]: id_scope"),
        (("dps", "colour"), "x", "[dps]"),
        (("hubs",), [], "[[hubs]]"),
        (("hubs", 1, "name"), "bad_host!", "[[hubs]] #2: name"),
        (("hubs", 1, "name"), "TOASTERS.azure-devices.net", "[[hubs]]"),
        (("enrollment_groups", 0, "allocation"), "geo", "allocation"),
        (("enrollment_groups", 0, "webhook_url"), _DELETE, "webhook_url"),
        (("enrollment_groups", 0, "webhook_url"), "ftp://x/api", "webhook_url"),
        (("enrollment_groups", 0, "hubs"), ["other.azure-devices.net"], "hubs"),
        (("enrollment_groups", 0, "reprovision"), "sometimes", "reprovision"),
        (("enrollment_groups", 0, "enabled"), "yes", "enabled"),
        (("enrollment_groups", 0, "primary_key"), "not base64!", "primary_key"),
        (("enrollment_groups", 0, "initial_twin"), {"tags": [1]}, "initial_twin"),
        (("enrollment_groups", 0, "initial_twin"), {"reported": {}}, "initial_twin"),
        (("individual_enrollments", 0, "allocation"), "static", "hubs"),
        (("individual_enrollments", 0, "webhook_url"), WEBHOOK, "webhook_url"),
        (("individual_enrollments", 0, "registration_id"), "", "registration_id"),
        (("events",), {"connection_events": "sometimes"}, "[events]: connection_events"),
        (("events",), {"snapshot_interval": 0}, "[events]: snapshot_interval"),
        (("events",), {"snapshot_interval": 3601}, "[events]: snapshot_interval"),
        (("events",), {"snapshot_interval": True}, "[events]: snapshot_interval"),
        (("events",), {"snapshot": 60}, "[events]"),
    ],
)
def test_invalid_values_name_section_and_field(
    path: tuple[Any, ...], value: object, location: str
) -> None:
    """Each invalid value raises ConfigError naming the source, the section and the field."""
    with pytest.raises(ConfigError) as caught:
        parse_config(_broken(path, value), source="emulator.toml")
    assert str(caught.value).startswith("emulator.toml: ")
    assert location in caught.value.location
    assert "secret-function-key" not in str(caught.value)


def test_duplicate_enrollment_ids_are_rejected() -> None:
    """Two groups with the same id (case-insensitively) are rejected."""
    data = example()
    twin = copy.deepcopy(data["enrollment_groups"][0])
    twin["id"] = "CONTOSO-custom"
    data["enrollment_groups"].append(twin)
    with pytest.raises(ConfigError, match="appears more than once"):
        parse_config(data, source="c.toml")


def test_key_errors_never_quote_the_key() -> None:
    """A wrong-length key is reported without its value."""
    short = base64.b64encode(b"0123456789").decode()
    data = _broken(("enrollment_groups", 0, "secondary_key"), short)
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="c.toml")
    assert short not in str(caught.value)
    assert "10 bytes" in str(caught.value)


def test_repr_hides_keys_and_webhook_url() -> None:
    """Enrollment reprs show no key and no webhook URL (it carries the function key)."""
    config = parse_config(example(), source="c.toml")
    text = repr(config)
    assert KEY_A not in text
    assert "secret-function-key" not in text
