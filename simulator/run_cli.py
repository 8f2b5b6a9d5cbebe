"""`python -m simulator run`: the ClientSimulator of Microsoft's symmetric-key sample, answered.

Flow, one line of output per step (keys and connection strings are never printed):

1. `settings.json` exists -> connect straight to its hub ("reconnect, don't reprovision").
   Otherwise register with DPS from `secrets.json` (derived primary key, then secondary) and write
   `settings.json` (0600): hub, device id, primary and secondary connection strings, payload.
2. Connect (primary connection string, then secondary). If the hub refuses both (unknown or
   disabled device, keys changed), provision once more and connect again.
3. Read the twin, print the desired properties, apply them, report them back.
4. Send `--messages N` telemetry messages `--interval S` apart; meanwhile answer the `reboot`
   direct method, print C2D messages and follow desired-property updates; keep listening
   `--linger S` seconds afterwards (`inf`: until Ctrl-C). The handlers are set before the device
   connects, so what the hub queued while it was offline (C2D messages) is printed too.

With `--local`, the address and CA come from the running local cloud, and while DPS is still
assigning the device the output says why (the webhook's last answer, when DPS calls it again).
A failed registration shows DPS's error code and message and the likely cause.

Exit codes: 0 done, 1 a step failed (DPS denied the device, hub refused after re-provisioning,
unreachable), 2 usage (missing or unusable secrets/settings file), 3 DPS refused both derived
keys: re-derive them from the new group keys.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.operator.client import waiting_reason
from simulator.device import (
    HubRefused,
    Registration,
    SimulatorError,
    Target,
    connect,
    quiet_sdk_logs,
    register,
)
from simulator.device_settings import DeviceSettings, read_settings, write_settings
from simulator.local import local_target, registration_state
from simulator.secrets_file import DeviceSecrets, UsageError, read_secret_file

__all__ = ["RunOptions", "add_target_arguments", "register_command", "run_device", "target_from"]

EXIT_OK, EXIT_USAGE = 0, 2
REBOOT = "reboot"


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """What `run` was asked to do."""

    secrets_path: Path
    settings_path: Path
    target: Target
    state_dir: Path | None = None  # with --local: where the running local cloud is found
    local: bool = False
    payload: Any = None
    messages: int = 3
    interval: float = 1.0
    linger: float = 0.0


def register_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `run` to the simulator's subcommands."""
    parser = commands.add_parser(
        "run",
        help="provision (or reconnect) one device and run it: twin, telemetry, methods, C2D",
        description=__doc__.split("\n\n", 1)[1].split("\n\nExit codes")[0],
        epilog="exit codes: 0 done, 1 a step failed, 2 usage, 3 keys refused: re-derive them",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--secrets", type=Path, default=Path("secrets.json"), metavar="FILE")
    parser.add_argument("--settings", type=Path, default=Path("settings.json"), metavar="FILE")
    parser.add_argument("--payload", metavar="JSON", help="DPS registration payload (JSON)")
    parser.add_argument("--messages", type=int, default=3, metavar="N", help="default 3")
    parser.add_argument("--interval", type=float, default=1.0, metavar="S", help="default 1.0")
    parser.add_argument(
        "--linger",
        type=float,
        default=0.0,
        metavar="S",
        help="listen S more seconds (inf: forever)",
    )
    add_target_arguments(parser)
    parser.set_defaults(command=_command)


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """`--local`, `--state-dir`, `--gateway`: shared by `run`, `fleet` and `derive-key`."""
    parser.add_argument(
        "--local",
        action="store_true",
        help="use the running local cloud (make up) instead of Azure",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="the local cloud's state directory (default: $EMULATOR_STATE_DIR, else the nearest "
        ".emulator)",
    )
    parser.add_argument(
        "--gateway",
        default=None,
        metavar="ADDRESS",
        help="the local cloud's address (default: the running one's, else 127.0.0.1)",
    )


def target_from(args: argparse.Namespace) -> Target:
    """The connection target the arguments name."""
    return local_target(args.state_dir, args.gateway) if args.local else Target()


def parse_payload(text: str | None) -> Any:
    """`--payload` as JSON, or None."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise UsageError('--payload: expected JSON, e.g. \'{"modelId": "dtmi:x;1"}\'') from None


def _command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    del env  # `run` reads no environment variables
    try:
        if args.messages < 0:
            raise UsageError("--messages: expected 0 or more")
        if args.interval < 0 or args.linger < 0:
            raise UsageError("--interval/--linger: expected 0 or more seconds")
        options = RunOptions(
            secrets_path=args.secrets,
            settings_path=args.settings,
            target=target_from(args),
            state_dir=args.state_dir,
            local=args.local,
            payload=parse_payload(args.payload),
            messages=args.messages,
            interval=args.interval,
            linger=args.linger,
        )
    except UsageError as error:
        print(f"run: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except SimulatorError as error:
        print(f"run: error: {error}", file=sys.stderr)
        return error.exit_code
    quiet_sdk_logs()
    try:
        return asyncio.run(run_device(options))
    except KeyboardInterrupt:
        return EXIT_OK


def _say(line: str) -> None:
    print(line, flush=True)


async def run_device(options: RunOptions) -> int:
    """The whole `run` flow; returns the exit code. Output goes to stdout, errors to stderr."""
    try:
        settings = read_settings(options.settings_path)
        secrets = read_secret_file(options.secrets_path) if options.secrets_path.exists() else None
        if settings is None and secrets is None:
            raise UsageError(
                f"{options.secrets_path}: missing, and there is no {options.settings_path} either; "
                "create it with `python -m simulator derive-key`"
            )
        _say(f"target: {options.target.describe()}")
        provisioned = False
        if settings is None:
            assert secrets is not None  # noqa: S101 - guarded just above; for the type checker
            _say(f"settings: no {options.settings_path}; provisioning")
            settings = await _provision(secrets, options)
            provisioned = True
        else:
            _say(
                f"settings: {options.settings_path} found; reconnecting to "
                f"{settings.assigned_hub} as {settings.device_id!r} without provisioning"
            )
        device = _Device(settings, options)
        try:
            client, slot = await connect(settings, options.target, step=_say, prepare=device.attach)
        except HubRefused as refused:
            if provisioned or secrets is None:
                raise
            _say(f"{refused}; provisioning once more")
            settings = await _provision(secrets, options)
            device = _Device(settings, options)
            client, slot = await connect(settings, options.target, step=_say, prepare=device.attach)
        _say(
            f"hub: connected to {settings.assigned_hub} as {settings.device_id!r} "
            f"with the {slot} connection string ({getattr(settings, slot.value).masked()})"
        )
        try:
            await device.operate()
        finally:
            await client.shutdown()
    except UsageError as error:
        print(f"run: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except SimulatorError as error:
        print(f"run: error: {error}", file=sys.stderr)
        return error.exit_code
    _say("done")
    return EXIT_OK


async def _provision(secrets: DeviceSecrets, options: RunOptions) -> DeviceSettings:
    _say(
        f"dps: registering {secrets.registration_id!r} with {secrets.provisioning_host} "
        f"(id scope {secrets.id_scope})"
    )
    waiting = None
    if options.local:

        def waiting() -> str | None:
            entry = registration_state(options.state_dir, secrets.registration_id)
            return waiting_reason(entry) if entry and entry["status"] == "assigning" else None

    registration: Registration = await register(
        secrets, options.target, payload=options.payload, step=_say, waiting=waiting
    )
    _say(
        f"dps: registered with the {registration.slot} key in {registration.seconds:.1f} s: "
        f"hub {registration.hub}, device {registration.device_id!r}, "
        f"substatus {registration.substatus}"
    )
    if registration.payload is not None:
        _say(f"dps: payload {json.dumps(registration.payload)}")
    settings = registration.settings(secrets)
    write_settings(options.settings_path, settings)
    _say(f"settings: wrote {options.settings_path} (mode 0600)")
    return settings


class _DeviceState:
    """The simulated device's applied configuration: the desired properties it has taken."""

    def __init__(self) -> None:
        self.applied: dict[str, Any] = {}

    def apply(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a desired document or patch; return the reported patch that acknowledges it."""
        patch = {name: value for name, value in desired.items() if not name.startswith("$")}
        for name, value in patch.items():
            if value is None:
                self.applied.pop(name, None)
            else:
                self.applied[name] = value
        return patch


class _Device:
    """The simulated device's behaviour: handlers set before connecting, then twin and telemetry."""

    def __init__(self, settings: DeviceSettings, options: RunOptions) -> None:
        self.settings = settings
        self.options = options
        self.state = _DeviceState()
        self.client: Any = None

    def attach(self, client: Any) -> None:
        """Set the handlers on a client that is about to connect."""
        self.client = client
        client.on_method_request_received = self.on_method
        client.on_message_received = self.on_message
        client.on_twin_desired_properties_patch_received = self.on_desired

    async def report(self, desired: Mapping[str, Any], what: str) -> None:
        patch = self.state.apply(desired)
        if patch:
            await self.client.patch_twin_reported_properties(patch)
        _say(f"twin: {what} applied and reported {json.dumps(patch, sort_keys=True)}")

    async def on_method(self, request: Any) -> None:
        from azure.iot.device import MethodResponse  # noqa: PLC0415 - heavy SDK

        answer: dict[str, Any]
        if request.name == REBOOT:
            status, answer = 200, {"result": "rebooting"}
        else:
            status, answer = 404, {"error": f"unknown method {request.name!r}"}
        await self.client.send_method_response(
            MethodResponse.create_from_method_request(request, status, answer)
        )
        _say(f"method: {request.name} {json.dumps(request.payload)} -> {status}")

    async def on_message(self, message: Any) -> None:
        data = message.data.decode("utf-8", "replace") if message.data else ""
        _say(f"c2d: {data} properties {json.dumps(message.custom_properties, sort_keys=True)}")

    async def on_desired(self, patch: Mapping[str, Any]) -> None:
        version = patch.get("$version")
        changes = {k: v for k, v in patch.items() if not k.startswith("$")}
        _say(f"twin: desired update (version {version}) {json.dumps(changes, sort_keys=True)}")
        await self.report(patch, "update")

    async def operate(self) -> None:
        """Read the twin, report, send telemetry, linger."""
        from azure.iot.device import Message  # noqa: PLC0415 - heavy SDK

        client, options = self.client, self.options
        twin = await client.get_twin()
        desired = twin.get("desired", {})
        shown = {k: v for k, v in desired.items() if not k.startswith("$")}
        _say(
            f"twin: desired (version {desired.get('$version')}) {json.dumps(shown, sort_keys=True)}"
        )
        await self.report(desired, "desired")
        for number in range(1, options.messages + 1):
            body = {"deviceId": self.settings.device_id, "sequence": number, **self.state.applied}
            message = Message(  # type: ignore[no-untyped-call]
                json.dumps(body), content_encoding="utf-8", content_type="application/json"
            )
            await client.send_message(message)
            _say(f"telemetry: sent {number}/{options.messages} {json.dumps(body, sort_keys=True)}")
            if number < options.messages:
                await asyncio.sleep(options.interval)
        if options.linger > 0:
            _say(
                "listening for methods, C2D and desired updates "
                + ("until Ctrl-C" if math.isinf(options.linger) else f"for {options.linger:g} s")
            )
            await asyncio.sleep(options.linger if not math.isinf(options.linger) else 1e9)
