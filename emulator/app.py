"""The composition root: configuration -> hubs -> DPS -> certificates -> MQTT server -> Functions.

`Emulator.start()` builds the pipeline in this order, each stage from the ones before it:

1. `config.load_config(--config)`: enrollments and hub names (missing keys written back, 0600);
2. `hub.Hubs`: one `Hub` per configured host name (the `ports.HubDirectory`);
3. DPS: the `ports.MqttEndpoint` for registrations, assigning devices through the hubs;
4. `certs.ensure_certificates`: CA and server certificate for the bind address, `localhost`, the
   DPS host and every hub, in `--state-dir` (clients trust `<state-dir>/ca.pem`);
   With `persist` (`--state-dir` given), `<state-dir>/state.json` is read first and what it holds
   put back (`persistence`); a `StateWriter` then rewrites it when something changed;
5. `server.MqttServer` on `--bind`:8883, routing each CONNECT by username: DPS usernames
   (`{idScope}/registrations/{id}/...`) to DPS, hub usernames (`{host}/{device}/?...`) to the hub
   named by `{host}`, anything else refused; each through its `fault_gate.FaultGate`, which
   applies the faults of `[faults]` and of the admin API;
6. `admin_api.AdminServer` on 127.0.0.1 (`admin_port`, 0 = any free port), its URL written to
   `<state-dir>/admin.json` and its token kept in `<state-dir>/admin-token` (0600) for
   `python -m emulator <command>`;
7. with `--host-functions`, the local Functions host serving `function_app.app` on
   127.0.0.1:7071, enforcing the function key (`--function-key`, else the one kept in
   `<state-dir>/function-key`, else a new one written there 0600; `function_key_generated`
   tells the CLI to print it once) and a master key kept in `<state-dir>/master-key`.

Service side (`service_side.ServiceSide`): right after the MQTT server, the service REST API on
`--bind` (`service_port` for the first hub, +1 per hub; 0 = free ports) and `<state-dir>/hubs.json`;
the hubs hand lifecycle events to it from the start, and once the Functions host is up they are
posted to `events_url`, else its `device_lifecycle` trigger (with `--host-functions`), else dropped.

`close()` stops them in reverse order. Nothing else in the package wires components together.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from emulator.admin_api import AdminServer
from emulator.certs import CertificatePaths, ensure_certificates, server_ssl_context
from emulator.config import EmulatorConfig, load_config
from emulator.dps_service import DpsService
from emulator.events import functions_host_events_url
from emulator.fault_gate import DelayedWebhook, FaultGate, drop_connections
from emulator.faults import DPS_TARGET, Faults
from emulator.functions_host import FunctionsHost, load_function_app, state_key
from emulator.hub import Hub, Hubs
from emulator.persistence import STATE_FILE, StateWriter, read_state, restore
from emulator.ports import MqttEndpoint
from emulator.server import MQTT_TLS_PORT, MqttServer
from emulator.service_server import DEFAULT_SERVICE_PORT
from emulator.service_side import ServiceSide
from emulator.webhook_client import HttpWebhook

__all__ = ["Emulator", "Options", "is_dps_username"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Options:
    """Everything the CLI can set (see `python -m emulator --help`)."""

    config_path: Path
    state_dir: Path
    bind: str = "127.0.0.1"
    mqtt_port: int = MQTT_TLS_PORT
    host_functions: bool = False
    function_key: str | None = field(default=None, repr=False)
    functions_bind: str = "127.0.0.1"  # tests move it off 127.0.0.1 to run side by side
    functions_port: int = 7071
    time_scale: float = 1.0
    service_port: int = DEFAULT_SERVICE_PORT  # first hub's service API port; 0 = free ports
    events_url: str | None = None  # lifecycle events; default: the local Functions host
    persist: bool = False  # keep devices, twins, registrations and edits in <state-dir>/state.json
    admin_port: int = 0  # the admin API on 127.0.0.1; 0 picks a free port (see admin.json)
    state_interval: float = 0.5  # seconds between checks for state to write


def is_dps_username(username: str) -> bool:
    """DPS usernames have `/registrations/` and no `?` (dps-mqtt.md §2)."""
    return "/registrations/" in username and "?" not in username


class Emulator:
    """DPS, the hubs and the MQTT listener (and optionally the Functions host), started together."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.config: EmulatorConfig | None = None
        self.hubs: Hubs | None = None
        self.dps: DpsService | None = None
        self.certificates: CertificatePaths | None = None
        self.server: MqttServer | None = None
        self.functions: FunctionsHost | None = None
        self.function_key: str | None = None
        self.function_key_generated = False
        self.service = ServiceSide(
            state_dir=options.state_dir, bind=options.bind, service_port=options.service_port
        )
        self.loaded_config: EmulatorConfig | None = None  # as the file says, before edits
        self.faults: Faults | None = None
        self.state: StateWriter | None = None
        self.admin: AdminServer | None = None
        self._gates: dict[str, FaultGate] = {}
        self._fault_task: asyncio.Task[None] | None = None

    @property
    def ca_path(self) -> Path:
        """The CA certificate clients trust (`server_verification_cert`)."""
        return self.options.state_dir / "ca.pem"

    def hub(self, name: str) -> Hub:
        """One hub by host name, for service-side operations (tests, tools)."""
        if self.hubs is None:
            raise RuntimeError("the emulator is not started")
        return self.hubs.hub(name)

    async def start(self) -> None:
        """Build and start every stage, in pipeline order."""
        options = self.options
        config = load_config(options.config_path)
        self.config = self.loaded_config = config
        hubs = Hubs(config.hubs, clock=time.time, on_event=self.service.on_event)
        self.hubs = hubs
        self.faults = Faults(config.hubs)
        for target, spec in config.faults.items():
            self.faults.set(target, spec, now=time.time())
        self.dps = self._build_dps(config, hubs, self.faults)
        self._gates = {DPS_TARGET: FaultGate(DPS_TARGET, self.dps, self.faults)}
        self._gates.update(
            {hub.name.lower(): FaultGate(hub.name, hub, self.faults) for hub in hubs}
        )
        if options.persist:
            self._restore_state(config, self.dps, hubs)
        self.certificates = ensure_certificates(
            options.state_dir,
            names=[options.bind, "localhost", config.dps.host, *config.hubs],
        )
        self.server = MqttServer(
            router=self._route,
            ssl_context=server_ssl_context(self.certificates),
            host=options.bind,
            port=options.mqtt_port,
        )
        await self.server.start()
        await self.service.start(config, hubs, server_ssl_context(self.certificates))
        self.admin = AdminServer(self, port=options.admin_port)
        await self.admin.start()
        self._fault_task = asyncio.get_running_loop().create_task(
            self._drop_on_schedule(), name="fault-drops"
        )
        if options.host_functions:
            await self._start_functions()
        await self.service.start_events(self._events_url())
        log.info(
            "emulator ready bind=%s dps=%s hubs=%s ca=%s",
            options.bind,
            config.dps.host,
            ",".join(config.hubs),
            self.ca_path,
        )

    async def close(self) -> None:
        """Stop in reverse order."""
        await self.service.close()
        if self.functions is not None:
            await self.functions.close()
            self.functions = None
        if self.admin is not None:
            await self.admin.close()
            self.admin = None
        if self._fault_task is not None:
            self._fault_task.cancel()
            await asyncio.gather(self._fault_task, return_exceptions=True)
            self._fault_task = None
        if self.server is not None:
            await self.server.close()
            self.server = None
        if self.dps is not None:
            await self.dps.aclose()
        if self.state is not None:
            await self.state.close()
            self.state = None

    def _restore_state(self, config: EmulatorConfig, dps: DpsService, hubs: Hubs) -> None:
        self.options.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.options.state_dir / STATE_FILE
        snapshot = read_state(path)  # StateError: reported by the caller, the file left alone
        if snapshot is not None:
            restore(snapshot, config, dps, hubs)
            self.config = dps.config
        self.state = StateWriter(path, config, dps, hubs, interval=self.options.state_interval)
        self.state.start()

    async def _drop_on_schedule(self) -> None:
        """Apply `drop_every`: close a target's connections each time its period comes round."""
        while self.faults is not None:
            await asyncio.sleep(0.25)
            for target in self.faults.due_drops(time.time()):
                dropped = drop_connections(self.faults, target)
                log.info("fault: dropped %d connection(s) of %s", dropped, target)

    async def _start_functions(self) -> None:
        options = self.options
        key, self.function_key_generated = state_key(
            options.state_dir, "function-key", options.function_key
        )
        master_key, _ = state_key(options.state_dir, "master-key")
        self.function_key = key
        self.functions = FunctionsHost(
            load_function_app(),
            function_key=key,
            master_key=master_key,
            host=options.functions_bind,
            port=options.functions_port,
        )
        await self.functions.start()

    def _build_dps(self, config: EmulatorConfig, hubs: Hubs, faults: Faults) -> DpsService:
        webhook = DelayedWebhook(HttpWebhook(), faults, sleep=asyncio.sleep)
        return DpsService(config, hubs, webhook, time_scale=self.options.time_scale)

    def _events_url(self) -> str | None:
        if self.options.events_url is not None:
            return self.options.events_url
        if self.config is not None and self.config.events_url is not None:
            return self.config.events_url
        if self.functions is not None:
            return functions_host_events_url(self.functions.base_url)
        return None

    def _route(self, username: str) -> MqttEndpoint | None:
        if is_dps_username(username):
            gate = self._gates.get(DPS_TARGET)
            if gate is not None and self.dps is not None:
                gate.endpoint = self.dps  # `dps` stays the endpoint in use (tests wrap it)
            return gate
        hub = self.hubs.route(username) if self.hubs is not None else None
        return self._gates.get(hub.name.lower()) if hub is not None else None
