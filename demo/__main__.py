"""`make demo`: the whole flow on this machine, offline, in well under two minutes, no prompts.

1. Azurite (Table storage) from node_modules, on a free 127.0.0.1 port.
2. Our Functions app over that Azurite (registration log, inventory) with the tutorial policy
   (examples/tutorial-policy.toml), hosted by the emulator's local Functions host.
3. The emulator (DPS + the tutorial's two hubs, demo/emulator.toml) on its own loopback address,
   127.77.0.1, so it never clashes with an emulator you are running; the enrollment group's
   webhook is our allocate function with a function key made for this run.
4. A small mixed fleet through the simulator's fleet code and the real azure-iot-device SDK:
   toasters, heat pumps and one device the policy denies; where each landed and with which twin.
5. The registration log read back from Table storage; then everything is shut down.

Exit code 0 when every device did what the policy says (the coffee machine is denied).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from demo.cloud import cloud_options, group_devices
from devtools.azurite import Azurite
from emulator.hub.twin import TwinDocument
from emulator.in_process import BackgroundEmulator
from simulator.device import quiet_sdk_logs
from simulator.fleet import DeviceOutcome, run_fleet
from store.base import Store

ROOT = Path(__file__).resolve().parents[1]
POLICY = "examples/tutorial-policy.toml"
BIND = "127.77.0.1"
DEVICES = (
    "breakroom499-contoso-tstrsd-007",
    "kitchen12-contoso-tstrsd-007",
    "mainbuilding167-contoso-hpsd-088",
    "annex3-contoso-hpsd-088",
    "lobby1-contoso-coffee-001",
)
DENIED = {"lobby1-contoso-coffee-001"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return 0 when every device ended as the policy says."""
    del argv
    started = time.monotonic()
    quiet_sdk_logs()
    print("demo: starting Azurite (Table storage)", flush=True)
    with (
        Azurite() as azurite,
        tempfile.TemporaryDirectory(prefix="dps-demo-") as scratch,
        _functions_app_on(azurite.connection_string) as store,
    ):
        code = _with_cloud(Path(scratch), store)
    print(f"\ndemo: everything stopped; {time.monotonic() - started:.1f} s in all")
    return code


@contextlib.contextmanager
def _functions_app_on(connection_string: str) -> Iterator[Store]:
    """The Functions app served in this process: the tutorial policy, its store on Azurite."""
    import function_app  # noqa: PLC0415 - after Azurite is up; loads the Functions app
    from store.runtime import build_runtime  # noqa: PLC0415
    from store.settings import load_settings  # noqa: PLC0415

    runtime = build_runtime(load_settings({"AzureWebJobsStorage": connection_string}))
    settings = {"ALLOCATION_POLICY_FILE": str(ROOT / POLICY)}
    with function_app.configured(settings=settings, runtime=runtime):
        yield runtime.store


def _with_cloud(scratch: Path, store: Store) -> int:
    options = cloud_options(scratch, BIND)
    print(f"demo: starting the emulator on {BIND}:8883 hosting the Functions app ({POLICY})")
    with BackgroundEmulator(options) as cloud:
        target, devices = group_devices(cloud, DEVICES)
        since = datetime.now(UTC)
        print(f"demo: provisioning {len(devices)} devices through DPS and our webhook\n")
        outcomes = asyncio.run(run_fleet(devices, target, concurrency=len(devices), messages=1))
        ok = _print_devices(cloud, outcomes)
    ok = _print_log(store, since) and ok
    return 0 if ok else 1


def _print_devices(cloud: BackgroundEmulator, outcomes: Sequence[DeviceOutcome]) -> bool:
    ok = True
    for outcome in outcomes:
        name = outcome.registration_id
        if outcome.failure is not None:
            print(f"{name:34} -> denied: {outcome.failure}")
            ok = ok and name in DENIED
            continue
        hub = outcome.hub or "?"
        twin = cloud.call(partial(_twin, cloud, hub, name))
        print(f"{name:34} -> {hub} (in {outcome.provisioning_seconds or 0:.1f} s)")
        if twin is not None:
            desired = {k: v for k, v in twin.desired.items() if not k.startswith("$")}
            print(f"{'':34}    tags {json.dumps(dict(twin.tags), sort_keys=True)}")
            print(f"{'':34}    desired {json.dumps(desired, sort_keys=True)}")
        ok = ok and name not in DENIED
    return ok


def _twin(cloud: BackgroundEmulator, hub: str, device_id: str) -> TwinDocument | None:
    return cloud.emulator.hub(hub).twin(device_id)


def _print_log(store: Store, since: datetime) -> bool:
    records = sorted(store.registrations_since(since), key=lambda record: record.time)
    print(f"\nregistration log (Table storage, {len(records)} record(s)):")
    for record in records:
        print(
            f"  {record.time:%H:%M:%S}  {record.registration_id:34} {record.outcome:10} "
            f"hub={record.hub or '-'} rule={record.rule or '-'} "
            f"{record.decision_ms:.1f} ms" + (f"  reason: {record.reason}" if record.reason else "")
        )
    return len({record.registration_id for record in records}) == len(DEVICES)


if __name__ == "__main__":
    sys.exit(main())
