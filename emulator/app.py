"""The composition root: configuration -> hubs -> DPS -> certificates -> MQTT server -> Functions.

`Emulator.start()` builds the pipeline in this order, each stage from the ones before it:

1. `config.load_config(--config)`: enrollments and hub names (missing keys written back, 0600);
2. `hub.Hubs`: one `Hub` per configured host name (the `ports.HubDirectory`);
3. DPS: the `ports.MqttEndpoint` for registrations, assigning devices through the hubs;
4. `certs.ensure_certificates`: CA and server certificate for the bind address, `localhost`, the
   DPS host and every hub, in `--state-dir` (clients trust `<state-dir>/ca.pem`);
   With `persist` (`--state-dir` given), `<state-dir>/state.json` and the journal after it are
   read first and what they hold put back (`persistence`); a `StateWriter` then journals every
   change before it is acknowledged (the MQTT and HTTP servers wait for it);
5. `server.MqttServer` on `--bind`:8883, routing each CONNECT by username: DPS usernames
   (`{idScope}/registrations/{id}/...`) to DPS, hub usernames (`{host}/{device}/?...`) to the hub
   named by `{host}`, anything else refused; each through its `fault_gate.FaultGate`, which
   applies the faults of `[faults]` and of the admin API;
6. `admin_api.AdminServer` on 127.0.0.1 (`admin_port`, 0 = any free port), its token kept in
   `<state-dir>/admin-token` (0600) for `python -m emulator <command>`;
7. with `--host-functions`, the local Functions host serving `function_app.app` on
   127.0.0.1:7071 (`functions_port`), enforcing the function key (`--function-key`, else the one
   kept in `<state-dir>/function-key`, else a new one written there 0600; `function_key_generated`
   tells the CLI to print it once) and a master key kept in `<state-dir>/master-key`. With
   `app_settings` (the `Values` of `local.settings.json` under the environment, as `func start`
   gives them) the app is served from those settings. Before the host listens, the app's own
   readiness check runs (policy loads, storage answers) and every custom-allocation enrollment
   whose webhook is this host must carry its function key: a problem stops the start
   (`AppNotReady`) instead of failing every device after minutes of DPS retries;
8. the web console (`console`) on a loopback address (`--bind` when it is one, else 127.0.0.1)
   and `console_port` (0 = any free port), unless `console` is off; its URL, with its login
   token, goes into `admin.json` as `console_url`;
9. `<state-dir>/admin.json` (`admin_client`): written last, so its presence means "ready".

Devices' other transports: right after the MQTT server, the HTTPS port (`https.gateway`, on
`--bind`:`https_port`, 443 by default): MQTT over WebSockets into the same MQTT server, and DPS's
and the hubs' HTTPS device APIs over the same DPS and hubs. Binding 443 needs privileges on many
machines: when the default port is refused for that reason the rest runs without it and
`notices` says what is off and how to enable it; a port the user chose (`https_port_required`)
that cannot be bound is a `ListenError` like any other.

Service side: after that, the service REST API (`service.server`) on `--bind`
(`service_port` for the first hub, +1 per hub; 0 = free ports) and `<state-dir>/hubs.json`
(`service.credentials`). The hubs hand lifecycle events over from the start; they wait until the
Functions host is up, then go (`events.delivery`) to `events_url`, else its `device_lifecycle`
trigger (with `--host-functions`), else nowhere; the URL must first pass Event Grid's subscription
validation handshake, else the start fails.
Connection events are held for IoT Hub's snapshots (`[events] connection_events`); a task
emits each hub's snapshot as it falls due.

`close()` stops them in reverse order. Nothing else in the package wires components together.

Errors (the CLI turns each into one line and exit status 2):

    ListenError     a port cannot be bound; names the option that sets it
    events.delivery.SubscriptionValidationFailed   the events URL does not echo Event Grid's
                    validation code (names the URL without its key, and what it answered)
    AppNotReady     the hosted app cannot serve (names the setting) or an enrollment's webhook URL
                    does not match the local host (names the enrollment)
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ipaddress
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from emulator.activity import Activity
from emulator.certs import CertificatePaths, ensure_certificates, server_ssl_context
from emulator.config import EmulatorConfig, load_config, write_enrollment_key
from emulator.console import ConsoleServer
from emulator.dps.edits import EnrollmentKind, KeySlot, with_key
from emulator.dps.service import DpsService
from emulator.dps.webhook import HttpWebhook
from emulator.endpoints import DPS, MqttEndpoint, connect_target
from emulator.events.delivery import EventDelivery, HttpEventPoster, functions_host_events_url
from emulator.faults.gate import DelayedWebhook, FaultGate, drop_connections
from emulator.faults.spec import DPS_TARGET, Faults
from emulator.functions.host import FunctionsHost, FunctionsHostError, state_key
from emulator.https.dps_api import DpsHttpApi
from emulator.https.gateway import DEFAULT_HTTPS_PORT, HttpsGateway
from emulator.https.hub_api import HubHttpApi
from emulator.hub.device_events import LifecycleEvent
from emulator.hub.directory import Hubs
from emulator.hub.endpoint import Hub
from emulator.mqtt.server import MQTT_TLS_PORT, MqttServer
from emulator.operator.api import AdminServer
from emulator.operator.client import remove_admin_file, write_admin_file
from emulator.persistence.journal import Journal, segment_paths
from emulator.persistence.writer import STATE_FILE, StateWriter, load_state, restore
from emulator.quotas.gate import HubQuotaGate, LoopLagMonitor
from emulator.quotas.limits import Quotas
from emulator.service.api import ServiceApi
from emulator.service.credentials import HUBS_FILE, connection_string, policy_keys, write_hubs_file
from emulator.service.server import DEFAULT_SERVICE_PORT, ServiceEndpoint, ServiceServer

__all__ = ["AppNotReady", "Emulator", "ListenError", "Options"]

log = logging.getLogger(__name__)

EARLY_EVENTS_LIMIT = 10_000  # events from before delivery starts (restored state, DPS at start)
SNAPSHOT_CHECK = 0.25  # seconds between looks for a connection snapshot that is due


@dataclass(frozen=True, kw_only=True)
class Options:
    """Everything the CLI can set (see `python -m emulator --help`)."""

    config_path: Path
    state_dir: Path
    bind: str = "127.0.0.1"
    mqtt_port: int = MQTT_TLS_PORT
    https_port: int = DEFAULT_HTTPS_PORT  # MQTT over WebSockets and the HTTPS device APIs
    https_port_required: bool = False  # the user chose it: failing to bind it stops the start
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
    # The hosted app's settings (func start's view of local.settings.json); None: os.environ.
    app_settings: Mapping[str, str] | None = field(default=None, repr=False)
    app_settings_file: Path | None = None  # the CLI's --functions-settings (None: the default)
    app_module: str = "function_app"
    log_level: str = "info"
    console: bool = True  # the web console (`--no-console` turns it off)
    console_port: int = 0  # its port on a loopback address; 0 picks a free one


class ListenError(Exception):
    """A listener cannot bind its port; the message names the option that chooses it."""

    def __init__(self, option: str, address: str, reason: str) -> None:
        super().__init__(
            f"{option}: cannot listen on {address} ({reason}); choose another with {option}"
        )
        self.option = option


class AppNotReady(Exception):
    """The hosted app, or an enrollment's webhook URL, would fail every registration."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


def _loopback_name(host: str) -> str:
    """`localhost` as the address it stands for, so URLs and --bind compare alike."""
    return "127.0.0.1" if host.lower() == "localhost" else host


def _is_loopback(host: str | None) -> bool:
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


async def _listen(option: str, address: str, start: Awaitable[None]) -> None:
    try:
        await start
    except OSError as error:
        raise ListenError(option, address, error.strerror or str(error)) from None
    except FunctionsHostError as error:
        raise ListenError(option, address, str(error).rsplit("(", 1)[-1].rstrip(")")) from None


class Emulator:
    """DPS, the hubs and the MQTT listener (and optionally the Functions host), started together."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self._config: EmulatorConfig | None = None
        self.hubs: Hubs | None = None
        self.dps: DpsService | None = None
        self.certificates: CertificatePaths | None = None
        self.server: MqttServer | None = None
        self.https: HttpsGateway | None = None
        self.notices: list[str] = []  # what runs without something, and how to enable it
        self.functions: FunctionsHost | None = None
        self.function_key: str | None = None
        self.function_key_generated = False
        self._system_key: str | None = None
        self.service: ServiceServer | None = None
        self.delivery: EventDelivery | None = None
        self.connection_strings: dict[str, str] = {}
        self._early_events: list[LifecycleEvent] = []
        self.activity = Activity()
        self.loaded_config: EmulatorConfig | None = None  # as the file says, before edits
        self.faults: Faults | None = None
        self.quotas: Quotas | None = None
        self._lag: LoopLagMonitor | None = None
        self.state: StateWriter | None = None
        self.admin: AdminServer | None = None
        self.console: ConsoleServer | None = None
        self._gates: dict[str, FaultGate] = {}
        self._fault_task: asyncio.Task[None] | None = None
        self._snapshot_task: asyncio.Task[None] | None = None
        self._app_context = contextlib.ExitStack()

    @property
    def config(self) -> EmulatorConfig | None:
        """The configuration in use: the file's, with the operator's edits once DPS runs."""
        return self.dps.config if self.dps is not None else self._config

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
        self._config = self.loaded_config = config
        hubs = Hubs(config.hubs, clock=time.time, on_event=self._on_event, presence=config.presence)
        for hub in hubs:
            hub.activity = self.activity  # telemetry and changes, for whoever watches (the console)
        self.hubs = hubs
        self.faults = Faults(config.hubs)
        for target, spec in config.faults.items():
            self.faults.set(target, spec, now=time.time())
        quotas = self.quotas = Quotas(
            config.quotas, config.hubs, now=time.time(), time_scale=options.time_scale
        )
        self._lag = LoopLagMonitor(quotas)
        self._lag.start()
        self.dps = self._build_dps(config, hubs, self.faults, quotas)
        self._gates = {DPS_TARGET: FaultGate(DPS_TARGET, self.dps, self.faults)}
        self._gates.update(
            {
                hub.name.lower(): FaultGate(
                    hub.name, HubQuotaGate(hub.name, hub, quotas), self.faults
                )
                for hub in hubs
            }
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
            durability=self.state.journal if self.state is not None else None,
        )
        await _listen("--mqtt-port", f"{options.bind}:{options.mqtt_port}", self.server.start())
        await self._start_https(config, hubs, self.dps, self.server, self.faults)
        await _listen(
            "--service-port",
            f"{options.bind}:{options.service_port}",
            self._start_service(config, hubs, server_ssl_context(self.certificates)),
        )
        self.admin = AdminServer(self, state_dir=options.state_dir, port=options.admin_port)
        await _listen("--admin-port", f"127.0.0.1:{options.admin_port}", self.admin.start())
        self._fault_task = asyncio.get_running_loop().create_task(
            self._drop_on_schedule(), name="fault-drops"
        )
        self._snapshot_task = asyncio.get_running_loop().create_task(
            self._report_connections(hubs, config.presence.interval), name="connection-snapshots"
        )
        if options.host_functions:
            await self._start_functions()
        await self._start_events(self._events_url())
        if options.console:
            host = options.bind if _is_loopback(options.bind) else "127.0.0.1"
            self.console = ConsoleServer(
                self, state_dir=options.state_dir, host=host, port=options.console_port
            )
            await _listen("--console-port", f"{host}:{options.console_port}", self.console.start())
        write_admin_file(options.state_dir, self.describe())
        log.info(
            "emulator ready bind=%s dps=%s hubs=%s ca=%s",
            options.bind,
            config.dps.host,
            ",".join(config.hubs),
            self.ca_path,
        )

    @property
    def hubs_path(self) -> Path:
        """`<state-dir>/hubs.json`: each hub's service connection string (0600)."""
        return self.options.state_dir / HUBS_FILE

    @property
    def service_endpoints(self) -> tuple[ServiceEndpoint, ...]:
        """Each hub's service API port (once started)."""
        return self.service.endpoints if self.service is not None else ()

    async def _start_https(
        self, config: EmulatorConfig, hubs: Hubs, dps: DpsService, mqtt: MqttServer, faults: Faults
    ) -> None:
        options = self.options
        assert self.certificates is not None  # noqa: S101 -- made just before
        gateway = HttpsGateway(
            dps=DpsHttpApi(dps, throttle=lambda now: faults.throttle(DPS_TARGET, now)),
            hubs=HubHttpApi(hubs),
            hub_names=config.hubs,
            dps_host=config.dps.host,
            mqtt=mqtt,
            ssl_context=server_ssl_context(self.certificates),
            host=options.bind,
            port=options.https_port,
            barrier=self.state.barrier if self.state is not None else None,
        )
        address = f"{options.bind}:{options.https_port}"
        try:
            await gateway.start()
        except PermissionError as error:
            if options.https_port_required:
                raise ListenError("--https-port", address, error.strerror or str(error)) from None
            notice = (
                f"MQTT over WebSockets and the HTTPS device APIs are off: port "
                f"{options.https_port} on {options.bind} needs privileges here; run with "
                f"--https-port N, or allow it with `sudo sysctl "
                f"net.ipv4.ip_unprivileged_port_start={options.https_port}`"
            )
            self.notices.append(notice)
            log.warning("%s", notice)
            return
        except OSError as error:
            raise ListenError("--https-port", address, error.strerror or str(error)) from None
        self.https = gateway

    def _on_event(self, event: LifecycleEvent) -> None:
        """What the hubs hand their lifecycle events to (never blocks)."""
        if self.activity.wanted("hub.lifecycle"):
            self.activity.publish(
                "hub.lifecycle",
                event.time,
                hub=event.hub,
                device_id=event.device_id,
                event=event.kind.value,
            )
        if self.delivery is not None:
            self.delivery.enqueue(event)
        elif len(self._early_events) < EARLY_EVENTS_LIMIT:
            self._early_events.append(event)

    async def _start_service(
        self, config: EmulatorConfig, hubs: Hubs, context: ssl.SSLContext
    ) -> None:
        policies = policy_keys(config, self.hubs_path)
        port = self.options.service_port
        self.service = ServiceServer(
            ServiceApi(hubs, policies),
            ssl_context=context,
            host=self.options.bind,
            ports=[
                ServiceEndpoint(hub, port + index if port else 0)
                for index, hub in enumerate(config.hubs)
            ],
            barrier=self.state.barrier if self.state is not None else None,
        )
        await self.service.start()
        self.connection_strings = {
            endpoint.hub: connection_string(
                self.options.bind, endpoint.port, policies[endpoint.hub]
            )
            for endpoint in self.service.endpoints
        }
        write_hubs_file(self.hubs_path, self.connection_strings)

    async def _start_events(self, url: str | None) -> None:
        early, self._early_events = self._early_events, []
        if url is None:
            return
        hubs = self.config.hubs if self.config is not None else ()
        self.delivery = EventDelivery(
            url, HttpEventPoster(), sources=hubs, scale=self.options.time_scale
        )
        for event in early:
            self.delivery.enqueue(event)
        await self.delivery.start()

    def key_regenerated(self, kind: EnrollmentKind, name: str, slot: KeySlot, key: str) -> None:
        """Write an operator's new enrollment key into the configuration file, where the factory
        finds it, and keep later edits as overrides of the file as it now is."""
        section = "enrollment_groups" if kind is EnrollmentKind.GROUP else "individual_enrollments"
        write_enrollment_key(self.options.config_path, section, name, f"{slot.value}_key", key)
        if self.loaded_config is not None:
            self.loaded_config = with_key(self.loaded_config, kind, name, slot, key)
            if self.state is not None:
                self.state.file_changed(self.loaded_config)

    def describe(self) -> dict[str, object]:
        """What `admin.json` (0600) says about this run: nothing secret but the console's URL,
        whose login token is as private as the admin token beside it."""
        return {
            "url": self.admin.url if self.admin is not None else None,
            "bind": self.options.bind,
            "mqtt_port": self.options.mqtt_port,
            "https_port": self.https.port if self.https is not None else None,
            "ca": str(self.ca_path.resolve()),
            "config": str(self.options.config_path.resolve()),
            "functions_url": self.functions.base_url if self.functions is not None else None,
            "console_url": self.console.url if self.console is not None else None,
            "pid": os.getpid(),
        }

    async def close(self) -> None:
        """Stop in reverse order."""
        remove_admin_file(self.options.state_dir)
        if self.console is not None:
            await self.console.close()
            self.console = None
        if self.delivery is not None:
            await self.delivery.close()
            self.delivery = None
        if self.service is not None:
            await self.service.close()
            self.service = None
        if self.functions is not None:
            await self.functions.close()
            self.functions = None
        self._app_context.close()
        if self.admin is not None:
            await self.admin.close()
            self.admin = None
        for task in (self._fault_task, self._snapshot_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._fault_task = self._snapshot_task = None
        if self.https is not None:
            await self.https.close()
            self.https = None
        if self.server is not None:
            await self.server.close()
            self.server = None
        if self.dps is not None:
            await self.dps.aclose()
        if self.state is not None:
            await self.state.close()
            self.state = None
        if self._lag is not None:
            await self._lag.close()
            self._lag = None

    def _restore_state(self, config: EmulatorConfig, dps: DpsService, hubs: Hubs) -> None:
        state_dir = self.options.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        # StateError: reported by the caller, the snapshot and journal left alone.
        snapshot, last = load_state(state_dir)
        if snapshot is not None:
            restore(snapshot, config, dps, hubs)
        self.state = StateWriter(
            state_dir / STATE_FILE,
            config,
            dps,
            hubs,
            Journal(state_dir, appended=last),
            interval=self.options.state_interval,
        )
        if segment_paths(state_dir):
            self.state.snapshot_now()  # what the journal held is folded into state.json
        self.state.start()

    async def _drop_on_schedule(self) -> None:
        """Apply `drop_every`: close a target's connections each time its period comes round."""
        while self.faults is not None:
            await asyncio.sleep(0.25)
            for target in self.faults.due_drops(time.time()):
                dropped = drop_connections(self.faults, target)
                log.info("fault: dropped %d connection(s) of %s", dropped, target)

    async def _report_connections(self, hubs: Hubs, interval: float) -> None:
        """Emit the hubs' connection snapshots as their windows close (`hub.presence`); in
        `immediate` mode there is never one to emit."""
        while True:
            await asyncio.sleep(min(SNAPSHOT_CHECK, interval / 4))
            hubs.report_connections(time.time())

    async def _start_functions(self) -> None:
        options = self.options
        module = importlib.import_module(options.app_module)
        if options.app_settings is not None:
            self._app_context.enter_context(module.configured(settings=options.app_settings))
        key, self.function_key_generated = state_key(
            options.state_dir, "function-key", options.function_key
        )
        problems = [str(problem) for problem in await asyncio.to_thread(module.readiness)]
        problems += self._webhook_problems(key)
        if problems:
            raise AppNotReady(problems)
        master_key, _ = state_key(options.state_dir, "master-key")
        self._system_key, _ = state_key(options.state_dir, "eventgrid-key")
        self.function_key = key
        self.functions = FunctionsHost(
            module.app,
            function_key=key,
            master_key=master_key,
            system_key=self._system_key,
            host=options.functions_bind,
            port=options.functions_port,
            readiness=module.readiness,
        )
        await _listen(
            "--functions-port",
            f"{options.functions_bind}:{options.functions_port}",
            self.functions.start(),
        )

    def _webhook_problems(self, function_key: str) -> list[str]:
        """Custom-allocation enrollments whose webhook is this host but lacks its function key:
        DPS would fail every one of their devices with 400209 (the host answers 401)."""
        config = self.config
        if config is None or self.options.functions_port == 0:
            return []
        bind, port = _loopback_name(self.options.functions_bind), self.options.functions_port
        problems = []
        for enrollment in (*config.enrollment_groups, *config.individual_enrollments):
            url = enrollment.webhook_url
            if url is None:
                continue
            parts = urlsplit(url)
            host = _loopback_name(parts.hostname or "")
            name = getattr(enrollment, "id", None) or getattr(enrollment, "registration_id", "")
            if (parts.port or 80) != port or not _is_loopback(host):
                continue
            if host != bind:
                problems.append(
                    f"enrollment {name}: webhook_url: points at {host}:{port}, but the local "
                    f"Functions host listens on {bind}:{port} (--bind); DPS would find nothing "
                    "there"
                )
                continue
            code = dict(parse_qsl(parts.query)).get("code")
            if code != function_key:
                problems.append(
                    f"enrollment {name}: webhook_url: its ?code= is not the local Functions "
                    "host's function key; DPS would fail every device with 400209. Start with "
                    "--function-key set to the URL's code, or put the key kept in "
                    f"{self.options.state_dir / 'function-key'} into the URL"
                )
        return problems

    def _build_dps(
        self, config: EmulatorConfig, hubs: Hubs, faults: Faults, quotas: Quotas
    ) -> DpsService:
        webhook = DelayedWebhook(HttpWebhook(), faults, sleep=asyncio.sleep)
        return DpsService(
            config,
            hubs,
            webhook,
            time_scale=self.options.time_scale,
            activity=self.activity,
            admission=quotas,
        )

    def _events_url(self) -> str | None:
        if self.options.events_url is not None:
            return self.options.events_url
        if self.config is not None and self.config.events_url is not None:
            return self.config.events_url
        if self.functions is not None:
            return functions_host_events_url(self.functions.base_url, self._system_key or "")
        return None

    def _route(self, username: str) -> MqttEndpoint | None:
        target = connect_target(username)
        return self._gates.get(DPS_TARGET if target == DPS else target or "")
