"""What the tests of DPS's pure rules share: a configuration with one group and one individual
enrollment, a registrant authenticated against it, and a registration record on a hub."""

from __future__ import annotations

import json
from typing import Any

from emulator.config import EmulatorConfig, parse_config
from emulator.dps.auth import Registrant, authenticate
from emulator.dps.wire import RegistrationRecord, Substatus
from sas.keys import derive_device_key
from sas.token import generate_sas_token
from tests.fixtures import FIXTURES

NOW = 1_700_000_000.0
GROUP_KEY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="  # emu-dev-001 vector
OTHER_KEY = "iZlcsgZYcqfw02/f1mcrIYTcbCmWZSgIgQ4ED9Kp/fE="
USERNAME = (
    "0ne00000001/registrations/dev-001/api-version=2019-03-31"
    "&ClientVersion=azure-iot-device-provisioning-py%2F2.14.0"
)
HUBS = ("toasters.azure-devices.net", "heatpumps.azure-devices.net")


def sas_vector(vector_id: str) -> dict[str, Any]:
    """One SAS vector from tests/fixtures/sas/vectors.json."""
    vectors = json.loads((FIXTURES / "sas" / "vectors.json").read_text())
    return next(vector for vector in vectors if vector["id"] == vector_id)


def make_config(**group: Any) -> EmulatorConfig:
    """A configuration with one group (overridable) and one individual enrollment."""
    entry = {
        "id": "emu-group",
        "primary_key": OTHER_KEY,
        "secondary_key": GROUP_KEY,
        "allocation": "custom",
        "webhook_url": "http://127.0.0.1:7071/api/allocate?code=function-key",
        **group,
    }
    return parse_config(
        {
            "hubs": [{"name": name} for name in HUBS],
            "enrollment_groups": [entry],
            "individual_enrollments": [
                {
                    "registration_id": "dev-42",
                    "device_id": "device-42",
                    "primary_key": GROUP_KEY,
                    "secondary_key": OTHER_KEY,
                    "allocation": "static",
                    "hubs": [HUBS[1]],
                }
            ],
        },
        source="test.toml",
    )


def registrant(config: EmulatorConfig, registration_id: str = "dev-001") -> Registrant:
    """Authenticate a registration id with a fresh token from the group's primary key."""
    group = config.enrollment_groups[0]
    key = derive_device_key(group.primary_key, registration_id)
    token = generate_sas_token(f"0ne00000001/registrations/{registration_id}", key, int(NOW) + 60)
    return authenticate(
        config,
        client_id=registration_id,
        username=USERNAME.replace("dev-001", registration_id),
        password=token.encode(),
        now=NOW,
    )


def assigned_record(hub: str, device_id: str = "dev-001") -> RegistrationRecord:
    return RegistrationRecord(
        registration_id="dev-001",
        device_id=device_id,
        assigned_hub=hub,
        substatus=Substatus.INITIAL_ASSIGNMENT,
        created="first",
        last_updated="first",
        generation=1,
    )
