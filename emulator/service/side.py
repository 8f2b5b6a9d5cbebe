"""The service side of the emulator, as `app.Emulator` starts it: REST API listeners, `hubs.json`,
and lifecycle event delivery.

- Policy keys: each hub's `shared_access_key` from the config; when absent, the key kept in
  `<state-dir>/hubs.json` by an earlier run; else a new one (base64 of 32 random bytes).
- `ServiceServer` on the bind address: the first hub on `service_port`, the next on
  `service_port + 1`, ... in configuration order (`service_port = 0`: any free ports).
- `<state-dir>/hubs.json` (0600, written atomically): `{"<hub>": "HostName=<bind>:<port>;
  SharedAccessKeyName=<policy>;SharedAccessKey=<key>"}` - what `store.retire` and
  `IoTHubRegistryManager.from_connection_string` take.
- Lifecycle events: `on_event` is what the hubs are built with. Events go to `events_url`, else the
  local Functions host's `device_lifecycle` trigger when it runs, else nowhere. Events raised
  before delivery starts wait in its queue.
"""

from __future__ import annotations

import json
import logging
import ssl
from pathlib import Path

from devtools.files import write_private
from devtools.keys import new_key
from emulator.config import EmulatorConfig
from emulator.events.delivery import EventDelivery, HttpEventPoster
from emulator.hub.device_events import LifecycleEvent
from emulator.hub.directory import Hubs
from emulator.service.api import ServiceApi, ServicePolicyKey
from emulator.service.server import ServiceEndpoint, ServiceServer

__all__ = ["HUBS_FILE", "ServiceSide", "connection_string"]

log = logging.getLogger(__name__)

HUBS_FILE = "hubs.json"


def connection_string(host: str, port: int, policy: ServicePolicyKey) -> str:
    """A hub service connection string for `host:port`."""
    return (
        f"HostName={host}:{port};SharedAccessKeyName={policy.key_name};SharedAccessKey={policy.key}"
    )


class ServiceSide:
    """Service API listeners, `hubs.json` and lifecycle event delivery."""

    def __init__(self, *, state_dir: Path, bind: str, service_port: int) -> None:
        self._state_dir = state_dir
        self._bind = bind
        self._service_port = service_port
        self._server: ServiceServer | None = None
        self._early: list[LifecycleEvent] = []
        self.delivery: EventDelivery | None = None
        self.connection_strings: dict[str, str] = {}

    def on_event(self, event: LifecycleEvent) -> None:
        """What the hubs hand their lifecycle events to (never blocks)."""
        if self.delivery is not None:
            self.delivery.enqueue(event)
        elif len(self._early) < 10_000:
            self._early.append(event)

    @property
    def hubs_path(self) -> Path:
        """`<state-dir>/hubs.json`."""
        return self._state_dir / HUBS_FILE

    async def start(
        self, config: EmulatorConfig, hubs: Hubs, ssl_context: ssl.SSLContext | None
    ) -> None:
        """Resolve the policy keys, bind the listeners, write `hubs.json`."""
        policies = self._policies(config)
        api = ServiceApi(hubs, policies)
        ports = [
            ServiceEndpoint(hub, self._service_port + index if self._service_port else 0)
            for index, hub in enumerate(config.hubs)
        ]
        self._server = ServiceServer(api, ssl_context=ssl_context, host=self._bind, ports=ports)
        await self._server.start()
        self.connection_strings = {
            endpoint.hub: connection_string(self._bind, endpoint.port, policies[endpoint.hub])
            for endpoint in self._server.endpoints
        }
        _write_private_json(self.hubs_path, self.connection_strings)

    async def start_events(self, url: str | None) -> None:
        """Start delivering lifecycle events to `url` (None: discard them)."""
        early, self._early = self._early, []
        if url is None:
            return
        self.delivery = EventDelivery(url, HttpEventPoster())
        for event in early:
            self.delivery.enqueue(event)
        await self.delivery.start()

    @property
    def endpoints(self) -> tuple[ServiceEndpoint, ...]:
        """Each hub's service API port."""
        return self._server.endpoints if self._server is not None else ()

    async def close(self) -> None:
        """Stop event delivery and the listeners."""
        if self.delivery is not None:
            await self.delivery.close()
            self.delivery = None
        if self._server is not None:
            await self._server.close()
            self._server = None

    def _policies(self, config: EmulatorConfig) -> dict[str, ServicePolicyKey]:
        kept = _kept_keys(self.hubs_path)
        configured = {policy.hub: policy for policy in config.service_policies}
        policies: dict[str, ServicePolicyKey] = {}
        for hub in config.hubs:
            policy = configured.get(hub)
            key_name = policy.key_name if policy is not None else "iothubowner"
            key = (policy.key if policy is not None else None) or kept.get((hub, key_name))
            if key is None:
                key = new_key(32)
            policies[hub] = ServicePolicyKey(key_name=key_name, key=key)
        return policies


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


def _write_private_json(path: Path, value: object) -> None:
    """Replace `path` in one rename with a 0600 file (it holds keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, json.dumps(value, indent=2) + "\n")
