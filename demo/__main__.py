"""The demo: the tutorial's devices allocated by our webhook.

Runs the tutorial's toaster and heat pump, plus a device the policy denies, through the allocate
function exactly as DPS calls it, and prints where each one landed and with which twin.
"""

from __future__ import annotations

import json
import os
import sys

import azure.functions as func

TOASTERS = "contoso-toasters-hub.azure-devices.net"
HEATPUMPS = "contoso-heatpumps-hub.azure-devices.net"
DEVICES = [
    "breakroom499-contoso-tstrsd-007",
    "mainbuilding167-contoso-hpsd-088",
    "lobby1-contoso-coffee-001",
]


def main() -> int:
    os.environ.setdefault("ALLOCATION_POLICY_FILE", "examples/tutorial-policy.toml")
    import function_app  # noqa: PLC0415 - after the setting is in place

    print(f"policy: {os.environ['ALLOCATION_POLICY_FILE']}\n")
    for registration_id in DEVICES:
        request = {
            "enrollmentGroup": {
                "enrollmentGroupId": "contoso-custom",
                "allocationPolicy": "custom",
            },
            "deviceRuntimeContext": {"registrationId": registration_id, "symmetricKey": {}},
            "linkedHubs": [TOASTERS, HEATPUMPS],
        }
        response = function_app.allocate(
            func.HttpRequest(
                "POST", "http://127.0.0.1/api/allocate", body=json.dumps(request).encode()
            )
        )
        answer = json.loads(response.get_body())
        if response.status_code == 200:
            twin = answer.get("initialTwin", {})
            print(f"{registration_id:36} -> {answer['iotHubHostName']}")
            print(f"{'':36}    tags {json.dumps(twin.get('tags', {}))}")
            print(f"{'':36}    desired {json.dumps(twin.get('properties', {}).get('desired', {}))}")
        else:
            print(
                f"{registration_id:36} -> denied ({response.status_code}): {answer.get('reason')}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
