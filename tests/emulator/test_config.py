"""Tests for emulator.config: parsing, validation and key write-back."""

from __future__ import annotations

import base64
import copy
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest

from emulator.config import (
    Allocation,
    ConfigError,
    Reprovision,
    generate_key,
    load_config,
    missing_keys,
    parse_config,
)
from emulator.twin import InitialTwin

KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(32, 96))).decode()
WEBHOOK = "http://127.0.0.1:7071/api/allocate?code=secret-function-key"

EXAMPLE = f"""
# the emulator's configuration
[dps]
id_scope = "0ne00000001"
host = "global.azure-devices-provisioning.net"

[[hubs]]
name = "toasters.azure-devices.net"

[[hubs]]
name = "heatpumps.azure-devices.net"

[[enrollment_groups]]
id = "contoso-custom"
primary_key = "{KEY_A}"
secondary_key = "{KEY_B}"
allocation = "custom"               # custom | hashed | static
webhook_url = "{WEBHOOK}"
hubs = ["toasters.azure-devices.net", "heatpumps.azure-devices.net"]
reprovision = "migrate"
initial_twin = {{ tags = {{ site = "a" }}, desired = {{ rate = 5 }} }}
enabled = true

[[individual_enrollments]]
registration_id = "dev-42"
primary_key = "{KEY_A}"
secondary_key = "{KEY_B}"
allocation = "hashed"
"""


def example() -> dict[str, Any]:
    """The README example, parsed by tomllib."""
    return tomllib.loads(EXAMPLE)


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


def test_generated_key_is_64_random_bytes() -> None:
    """Generated keys are base64 of 64 bytes, and differ each time."""
    first, second = generate_key(), generate_key()
    assert len(base64.b64decode(first)) == 64
    assert first != second


def test_missing_keys_lists_slots_in_file_order() -> None:
    """missing_keys names the section, index and field of each absent key."""
    data = example()
    del data["enrollment_groups"][0]["secondary_key"]
    data["individual_enrollments"][0]["primary_key"] = ""
    assert missing_keys(data) == [
        ("enrollment_groups", 0, "secondary_key"),
        ("individual_enrollments", 0, "primary_key"),
    ]


def test_load_writes_generated_keys_back_atomically_0600(tmp_path: Path) -> None:
    """Missing keys are generated, written under their table header, the file becomes 0600."""
    text = EXAMPLE.replace(f'primary_key = "{KEY_A}"\n', "")
    path = tmp_path / "emulator.toml"
    path.write_text(text)
    path.chmod(0o644)
    keys = [base64.b64encode(bytes([n]) * 32).decode() for n in (1, 2)]
    made = iter(keys)
    config = load_config(path, make_key=lambda: next(made))
    assert config.enrollment_groups[0].primary_key == keys[0]
    assert config.individual_enrollments[0].primary_key == keys[1]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = path.read_text()
    assert "# the emulator's configuration" in written
    assert "# custom | hashed | static" in written
    assert load_config(path) == config
    assert list(tmp_path.iterdir()) == [path]


def test_load_leaves_a_complete_file_untouched(tmp_path: Path) -> None:
    """A file with every key is parsed and not rewritten."""
    path = tmp_path / "emulator.toml"
    path.write_text(EXAMPLE)
    before = path.stat().st_mtime_ns
    load_config(path, make_key=lambda: pytest.fail("no key should be generated"))
    assert path.stat().st_mtime_ns == before


def test_load_rejects_inline_tables_it_cannot_complete(tmp_path: Path) -> None:
    """Missing keys in an inline array of tables give an error asking for [[...]] tables."""
    path = tmp_path / "c.toml"
    path.write_text('hubs = [{name = "h.azure-devices.net"}]\nenrollment_groups = [{id = "g"}]\n')
    with pytest.raises(ConfigError, match=r"write the entry as a \[\[enrollment_groups\]\] table"):
        load_config(path)


def test_load_names_unreadable_and_non_toml_files(tmp_path: Path) -> None:
    """A missing file and a non-TOML file give ConfigError naming the file."""
    with pytest.raises(ConfigError, match=r"^absent\.toml: file: cannot be read"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[hubs]\n")
    with pytest.raises(ConfigError, match=r"^bad\.toml: file: expected TOML"):
        load_config(bad)
