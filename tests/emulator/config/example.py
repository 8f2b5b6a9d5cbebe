"""The README's example configuration, as the config tests read it (literal TOML on purpose)."""

from __future__ import annotations

import base64
import tomllib
from typing import Any

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
