"""The AllocationResponse DPS reads (``docs/protocol/webhook.md`` §3): exact key casing, nothing extra."""

from __future__ import annotations

from typing import Any

from allocation.engine import Assignment


def response_body(assignment: Assignment) -> dict[str, Any]:
    """``{"iotHubHostName", "initialTwin"?, "payload"?}``: optional parts only when the rule sets them."""
    body: dict[str, Any] = {"iotHubHostName": assignment.hub}
    if assignment.initial_twin is not None:
        body["initialTwin"] = assignment.initial_twin
    if assignment.payload is not None:
        body["payload"] = assignment.payload
    return body
