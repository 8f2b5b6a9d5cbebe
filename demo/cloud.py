"""What `make demo` and the console screenshots share: a local cloud from demo/emulator.toml whose
custom-allocation group calls the hosted Functions app, and the keys of that group's devices."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emulator.app import Options
from emulator.in_process import BackgroundEmulator
from simulator.device import Target
from simulator.secrets_file import DeviceSecrets, derive_secrets

ROOT = Path(__file__).resolve().parents[1]
CONFIG_TEMPLATE = ROOT / "demo" / "emulator.toml"
FUNCTIONS_PORT = 7071
GROUP = "contoso-custom"


def cloud_options(scratch: Path, bind: str, **extra: Any) -> Options:
    """Options for an emulator on `bind` hosting the Functions app on `FUNCTIONS_PORT`, with state in
    `scratch`; its group's webhook URL carries a fresh function key. `extra`: more `Options`."""
    function_key = secrets.token_urlsafe(24)
    webhook = f"http://{bind}:{FUNCTIONS_PORT}/api/allocate?code={function_key}"
    config = scratch / "emulator.toml"
    config.touch(mode=0o600)  # the emulator writes the generated group keys into it
    config.write_text(CONFIG_TEMPLATE.read_text().replace("{webhook_url}", webhook))
    return Options(
        config_path=config,
        state_dir=scratch / "state",
        bind=bind,
        host_functions=True,
        function_key=function_key,
        functions_bind=bind,
        functions_port=FUNCTIONS_PORT,
        **extra,
    )


def group_devices(
    cloud: BackgroundEmulator, registration_ids: Sequence[str]
) -> tuple[Target, list[DeviceSecrets]]:
    """Where devices connect to `cloud`, and the keys of `registration_ids` in its `GROUP`."""
    config = cloud.emulator.config
    assert config is not None  # noqa: S101 - set by start()
    group = next(g for g in config.enrollment_groups if g.id == GROUP)
    devices = [
        derive_secrets(
            config.dps.host,
            config.dps.id_scope,
            registration_id,
            group.primary_key,
            group.secondary_key,
        )
        for registration_id in registration_ids
    ]
    bind = cloud.emulator.options.bind
    return Target(gateway=bind, ca_pem=cloud.emulator.ca_path.read_text(encoding="ascii")), devices
