"""A small emulator to persist: one hub, one enrollment group, one DPS record (shared by the
persistence tests)."""

from __future__ import annotations

from emulator.config import parse_config
from emulator.dps.edits import EnrollmentKind, KeySlot, with_key
from emulator.dps.service import DpsService
from emulator.dps.webhook import FunctionWebhook, WebhookResponse
from emulator.dps.wire import RegistrationRecord, Substatus
from emulator.hub.directory import Hubs

NOW = 1_700_000_000.0
HUB = "toasters.azure-devices.net"
KEY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
NEW_KEY = "OSANXEslinwdWI7CugTZIIMS97VdG65m3pD753neq7E="
CONFIG = parse_config(
    {
        "hubs": [{"name": HUB}],
        "enrollment_groups": [{"id": "contoso", "primary_key": KEY, "secondary_key": KEY}],
    },
    source="e.toml",
)
RECORD = RegistrationRecord(
    registration_id="dev-1",
    device_id="dev-1",
    assigned_hub=HUB,
    substatus=Substatus.INITIAL_ASSIGNMENT,
    created="2023-11-14T22:13:20.0000000Z",
    last_updated="2023-11-14T22:13:20.0000000Z",
    generation=1,
)


def running() -> tuple[DpsService, Hubs]:
    hubs = Hubs([HUB], clock=lambda: NOW)
    dps = DpsService(CONFIG, hubs, FunctionWebhook(lambda u, b: WebhookResponse(500)))
    return dps, hubs


def populated() -> tuple[DpsService, Hubs]:
    dps, hubs = running()
    hub = hubs.hub(HUB)
    hub.upsert_device("dev-1", primary_key=KEY, secondary_key=KEY, twin=None, now=NOW)
    hub.update_desired("dev-1", {"target": 21.5, "mode": {"fan": "auto"}}, now=NOW + 1)
    hub.upsert_device(
        "dev-2", primary_key=KEY, secondary_key=KEY, twin=None, now=NOW, enabled=False
    )
    dps.restore_records([RECORD])
    dps.replace_config(with_key(CONFIG, EnrollmentKind.GROUP, "contoso", KeySlot.PRIMARY, NEW_KEY))
    return dps, hubs
