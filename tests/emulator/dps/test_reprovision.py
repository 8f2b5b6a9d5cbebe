"""Tests for emulator.dps.reprovision: what an assignment does to the hubs under each policy."""

from __future__ import annotations

import pytest

from emulator.dps.allocation import Assigned
from emulator.dps.reprovision import TwinSource, plan_assignment
from emulator.dps.wire import format_dps_timestamp
from emulator.hub.twin import InitialTwin
from tests.emulator.dps.registrants import HUBS, NOW, assigned_record, make_config, registrant

ENROLLMENT_TWIN = InitialTwin(tags={"from": "enrollment"})
WEBHOOK_TWIN = InitialTwin(tags={"from": "webhook"})


@pytest.mark.parametrize(
    ("policy", "old_hub", "new_hub", "substatus", "source", "deleted"),
    [
        ("migrate", None, HUBS[0], "initialAssignment", TwinSource.INITIAL, None),
        ("migrate", HUBS[0], HUBS[1], "deviceDataMigrated", TwinSource.MIGRATE, HUBS[0]),
        (
            "migrate",
            HUBS[0],
            HUBS[0],
            "reprovisionedToInitialAssignment",
            TwinSource.KEEP,
            None,
        ),
        ("reset", HUBS[0], HUBS[1], "deviceDataReset", TwinSource.INITIAL, HUBS[0]),
        ("reset", HUBS[0], HUBS[0], "reprovisionedToInitialAssignment", TwinSource.INITIAL, None),
        (
            "never",
            HUBS[0],
            HUBS[1],
            "reprovisionedToInitialAssignment",
            TwinSource.KEEP,
            None,
        ),
    ],
)
def test_reprovision_policies_plan_the_hub_changes(
    *,
    policy: str,
    old_hub: str | None,
    new_hub: str,
    substatus: str,
    source: TwinSource,
    deleted: str | None,
) -> None:
    """Each policy picks the hub, substatus, twin source and old-hub deletion the table says."""
    config = make_config(reprovision=policy, initial_twin={"tags": {"from": "enrollment"}})
    who = registrant(config)
    record = assigned_record(old_hub) if old_hub else None
    new_record, plan = plan_assignment(
        who, Assigned(hub=new_hub, initial_twin=WEBHOOK_TWIN), record=record, now=NOW
    )
    expected_hub = old_hub if policy == "never" and old_hub else new_hub
    assert (plan.hub, new_record.assigned_hub) == (expected_hub, expected_hub)
    assert new_record.substatus == substatus
    assert (plan.twin_source, plan.delete_from) == (source, deleted)
    assert plan.initial_twin == WEBHOOK_TWIN
    assert new_record.created == ("first" if record else format_dps_timestamp(NOW))


def test_enrollment_twin_applies_when_the_webhook_sends_none() -> None:
    """Without a webhook initialTwin the enrollment's initial twin is used."""
    config = make_config(initial_twin={"tags": {"from": "enrollment"}})
    _, plan = plan_assignment(registrant(config), Assigned(hub=HUBS[0]), record=None, now=NOW)
    assert plan.initial_twin == ENROLLMENT_TWIN
