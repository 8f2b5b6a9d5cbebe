"""What the simulator takes from a running local cloud (`--local`), so nothing has to be copied by hand.

- Where to connect: the emulator's bind address (the SDK's `gateway_hostname`) and the CA it
  trusts, from `<state-dir>/admin.json` (`emulator.operator.client`); without a running cloud, the
  state directory's `ca.pem` and 127.0.0.1, which is enough to reconnect from `settings.json`.
- For the factory tools (`derive-key --local`, `fleet --local`): DPS's host and ID scope and an
  enrollment group's two keys, asked of the admin API. The group is `--group`, else the first
  custom-allocation group (the one whose devices go through our webhook), else the first group.
- For `fleet --local --registration-log`: the app's `AzureWebJobsStorage` as `make up` gives it
  to the hosted app (the environment's, else the checkout's `local.settings.json`).
- While a registration waits, the latest attempt DPS keeps for it (`registration_state`): the
  webhook's last answer and when DPS calls it again. Real DPS does not tell a device why it is
  still assigning; the local cloud can.

Keys are held in memory only long enough to derive device keys; they are never printed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from emulator.operator.client import AdminClient, LocalCloud, Refused, Unreachable, find_state_dir
from simulator.device import SimulatorError, Target
from simulator.device import Unreachable as DeviceUnreachable

__all__ = ["LocalGroup", "local_group", "local_storage", "local_target", "registration_state"]

DEFAULT_GATEWAY = "127.0.0.1"


@dataclass(frozen=True, kw_only=True)
class LocalGroup:
    """An enrollment group of the running local cloud, with what a factory needs from it."""

    group_id: str
    allocation: str
    provisioning_host: str
    id_scope: str
    primary_key: str = field(repr=False)
    secondary_key: str = field(repr=False)


def local_target(state_dir: Path | None, gateway: str | None) -> Target:
    """The emulator's address and CA: from the running cloud, else from `state_dir`."""
    try:
        cloud = LocalCloud.find(state_dir)
    except Unreachable:
        return Target.local(find_state_dir(state_dir), gateway or DEFAULT_GATEWAY)
    ca = cloud.ca or cloud.state_dir / "ca.pem"
    try:
        ca_pem = ca.read_text(encoding="ascii")
    except OSError as error:
        raise DeviceUnreachable(f"--state-dir: cannot read {ca} ({error.strerror})") from None
    return Target(gateway=gateway or cloud.bind, ca_pem=ca_pem)


def _client(state_dir: Path | None) -> AdminClient:
    try:
        return LocalCloud.find(state_dir).client()
    except Unreachable as error:
        raise DeviceUnreachable(str(error)) from None


def local_group(state_dir: Path | None, group: str | None = None) -> LocalGroup:
    """The chosen enrollment group of the running local cloud, with its keys."""
    client = _client(state_dir)
    try:
        status = client.call("GET", "/admin/status")
        groups = [
            entry
            for entry in client.call("GET", "/admin/enrollments")["enrollments"]
            if entry["kind"] == "group"
        ]
        chosen = _choose(groups, group)
        keys = client.call("GET", f"/admin/enrollments/group/{chosen['id']}/keys")
    except Unreachable as error:
        raise DeviceUnreachable(str(error)) from None
    except Refused as error:
        raise SimulatorError(f"--local: the local cloud refused: {error}") from None
    return LocalGroup(
        group_id=chosen["id"],
        allocation=chosen["allocation"],
        provisioning_host=status["dps"]["host"],
        id_scope=status["dps"]["id_scope"],
        primary_key=keys["primary_key"],
        secondary_key=keys["secondary_key"],
    )


def _choose(groups: list[dict[str, Any]], wanted: str | None) -> dict[str, Any]:
    if wanted is not None:
        for entry in groups:
            if entry["id"].lower() == wanted.lower():
                return entry
        known = ", ".join(entry["id"] for entry in groups) or "none"
        raise SimulatorError(
            f"--group: no enrollment group {wanted!r} (the local cloud has: {known})"
        )
    if not groups:
        raise SimulatorError("--local: the local cloud has no enrollment group")
    return next((entry for entry in groups if entry["allocation"] == "custom"), groups[0])


def registration_state(state_dir: Path | None, registration_id: str) -> dict[str, Any] | None:
    """What the local DPS says about a registration right now, or None when it cannot say."""
    try:
        return _client(state_dir).call(
            "GET", f"/admin/registrations/{_segment(registration_id)}", timeout=5.0
        )
    except (DeviceUnreachable, Refused, Unreachable):
        return None


def _segment(value: str) -> str:
    return quote(value, safe="")


def local_storage(environ: Mapping[str, str], settings: Path | None = None) -> str | None:
    """The hosted app's `AzureWebJobsStorage` as `make up` sets it: the environment's, else the
    one in `settings` (the checkout's `local.settings.json`); None when neither has one or the
    file cannot be read."""
    from devtools.checkout import CHECKOUT  # noqa: PLC0415 -- only for --registration-log
    from emulator.functions.settings import (  # noqa: PLC0415
        SETTINGS_FILE,
        LocalSettingsError,
        read_values,
    )

    try:
        values = read_values(settings if settings is not None else CHECKOUT / SETTINGS_FILE)
    except LocalSettingsError:
        values = {}
    return {**values, **environ}.get("AzureWebJobsStorage") or None
