"""Each hub's service policy key, and the connection strings clients use, kept in `hubs.json`.

- Policy keys: each hub's `shared_access_key` from the config; when absent, the key kept in
  `<state-dir>/hubs.json` by an earlier run; else a new one (base64 of 32 random bytes).
- `<state-dir>/hubs.json` (0600, written atomically): `{"<hub>": "HostName=<bind>:<port>;
  SharedAccessKeyName=<policy>;SharedAccessKey=<key>"}`: what `store.retire` and
  `IoTHubRegistryManager.from_connection_string` take. Never printed, never logged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from devtools.files import write_private
from devtools.keys import new_key
from emulator.config import EmulatorConfig
from emulator.service.api import ServicePolicyKey

__all__ = ["HUBS_FILE", "connection_string", "policy_keys", "write_hubs_file"]

HUBS_FILE = "hubs.json"
DEFAULT_POLICY = "iothubowner"


def connection_string(host: str, port: int, policy: ServicePolicyKey) -> str:
    """A hub service connection string for `host:port`."""
    return (
        f"HostName={host}:{port};SharedAccessKeyName={policy.key_name};SharedAccessKey={policy.key}"
    )


def policy_keys(config: EmulatorConfig, hubs_file: Path) -> dict[str, ServicePolicyKey]:
    """Each hub's policy: the config's key, else the one kept in `hubs_file`, else a new one."""
    kept = _kept_keys(hubs_file)
    configured = {policy.hub: policy for policy in config.service_policies}
    policies: dict[str, ServicePolicyKey] = {}
    for hub in config.hubs:
        policy = configured.get(hub)
        key_name = policy.key_name if policy is not None else DEFAULT_POLICY
        key = (policy.key if policy is not None else None) or kept.get((hub, key_name))
        policies[hub] = ServicePolicyKey(key_name=key_name, key=key or new_key(32))
    return policies


def write_hubs_file(path: Path, strings: Mapping[str, str]) -> None:
    """Replace `hubs.json` in one rename with a 0600 file (it holds keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, json.dumps(dict(strings), indent=2) + "\n")


def _kept_keys(path: Path) -> dict[tuple[str, str], str]:
    """`(hub, policy name) -> key` from an earlier run's `hubs.json` (nothing if unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    kept: dict[tuple[str, str], str] = {}
    if not isinstance(data, dict):
        return kept
    for hub, text in data.items():
        if not isinstance(text, str):
            continue
        fields = dict(part.split("=", 1) for part in text.split(";") if "=" in part)
        name, key = fields.get("SharedAccessKeyName"), fields.get("SharedAccessKey")
        if name and key:
            kept[(hub, name)] = key
    return kept
