"""One simulated device on the real `azure-iot-device` SDK (asyncio API): provision, connect.

Why the asyncio API: `fleet` runs hundreds of devices in one process, where a coroutine per device
under a semaphore is cheap and the sync API would need a thread per device on top of the SDK's own
(paho's network thread per client). `run` uses the same functions, so one code path is exercised.

Rules (docs/protocol/dps-mqtt.md §4, §6; hub-mqtt.md §6):

- Registration tries the derived primary key, then the secondary key, and only on a refused
  credential (`CredentialError`: DPS's CONNACK 5). Both refused -> `KeysRefused`: the group keys
  changed and the device keys must be derived again.
- `ClientError` from `register()` is a DPS answer, not a credential problem: `failed` (the webhook
  or policy denied the device), `disabled`, a 4xx topic status, or a 30 s timeout; it is reported
  with its cause and never retried with the other key. DPS's own error code and message, which
  the SDK keeps to itself, come from `dps_replies.DpsReplies`, with the likely cause.
- While DPS assigns (it may be retrying the webhook for minutes), `register` says so every so
  often through `step`, with the reason when a `waiting` callback can tell it (`--local`).
- The hub: the primary connection string, then the secondary, again only on `CredentialError`;
  both refused -> `HubRefused` (unknown device, disabled, keys changed), which `run` answers by
  provisioning once more.
- `--local` targets the emulator: `gateway_hostname` is its bind address and the CA is
  `<state-dir>/ca.pem`; the DPS host and hub names stay the real ones (they are the SAS resource).
- Nothing here logs or raises with a key or connection string in it; `quiet_sdk_logs()` keeps the
  SDK's own loggers at WARNING (its INFO/DEBUG lines include connection details).

Errors:

    SimulatorError          base; `exit_code` is what the CLI returns
    ├── KeysRefused         DPS refused both derived keys: re-derive them (exit 3)
    ├── RegistrationFailed  DPS answered but did not assign the device (exit 1)
    ├── HubRefused          the hub refused both connection strings (exit 1)
    └── Unreachable         no connection, TLS failure or no answer in time (exit 1)
        └── ServerBusy      DPS or the hub refused the CONNECT with CONNACK 3 "server
                            unavailable": throttled, try again later (the SDK does not retry
                            a first connect, hub-mqtt.md §6, dps-mqtt.md §4)
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from simulator.device_settings import ConnectionString, DeviceSettings
from simulator.dps_replies import DpsError, DpsReplies, likely_cause
from simulator.secrets_file import DeviceSecrets

__all__ = [
    "EXIT_KEYS_REFUSED",
    "HubRefused",
    "KeySlot",
    "KeysRefused",
    "Registration",
    "RegistrationFailed",
    "ServerBusy",
    "SimulatorError",
    "Target",
    "Unreachable",
    "connect",
    "quiet_sdk_logs",
    "register",
]

EXIT_FAILED, EXIT_KEYS_REFUSED = 1, 3
RELEASE_TIMEOUT = 5.0
WAIT_REPORT_SECONDS = 5.0  # how often `register` checks on a registration DPS is still assigning
WAIT_REPEAT_SECONDS = 30.0  # an unchanged reason is said again after this long
SDK_LOGGERS = ("azure.iot.device", "paho")

Step = Callable[[str], None]
Waiting = Callable[[], str | None]


class SimulatorError(Exception):
    """A device step failed; the message says what happened and what to do, never a key."""

    exit_code = EXIT_FAILED


class KeysRefused(SimulatorError):
    """DPS refused the derived primary and secondary keys."""

    exit_code = EXIT_KEYS_REFUSED


class RegistrationFailed(SimulatorError):
    """DPS answered without assigning the device; `reason` is a short label for summaries."""

    def __init__(self, message: str, *, reason: str, error_code: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.error_code = error_code


class HubRefused(SimulatorError):
    """The hub refused the device with both connection strings."""


class Unreachable(SimulatorError):
    """DPS or the hub could not be reached, or did not answer in time."""


class ServerBusy(Unreachable):
    """CONNACK 3 ("server unavailable"): DPS or the hub is throttling connections; retry later."""


# How paho words CONNACK 3 in the cause of the SDK's ConnectionFailedError.
_CONNACK_3 = "broker unavailable"


def _refused_as_busy(error: BaseException) -> bool:
    """Whether the SDK's error is a CONNACK 3 (the cause's text), not a network failure."""
    return _CONNACK_3 in str(error.__cause__ or "")


class KeySlot(StrEnum):
    """Which of a device's two keys (or connection strings) worked."""

    PRIMARY = "primary"
    SECONDARY = "secondary"


@dataclass(frozen=True, kw_only=True)
class Target:
    """Where the SDK connects: real Azure (no gateway, system trust) or the local emulator."""

    gateway: str | None = None
    ca_pem: str | None = field(default=None, repr=False)

    @classmethod
    def local(cls, state_dir: Path, address: str) -> Target:
        """The emulator bound to `address` whose state directory is `state_dir`."""
        ca_path = state_dir / "ca.pem"
        try:
            ca_pem = ca_path.read_text(encoding="ascii")
        except OSError:
            raise Unreachable(
                f"--state-dir: no {ca_path}; start the emulator first "
                f"(python -m emulator --config ... --state-dir {state_dir} --bind {address})"
            ) from None
        return cls(gateway=address, ca_pem=ca_pem)

    def sdk_options(self) -> dict[str, Any]:
        """Keyword arguments for the SDK's `create_from_symmetric_key`."""
        options: dict[str, Any] = {}
        if self.gateway is not None:
            options["gateway_hostname"] = self.gateway
        if self.ca_pem is not None:
            options["server_verification_cert"] = self.ca_pem
        return options

    def describe(self) -> str:
        """For output: where connections go."""
        return "Azure" if self.gateway is None else f"the local emulator at {self.gateway}"


@dataclass(frozen=True, kw_only=True)
class Registration:
    """A successful registration: where the device went and which key got it there."""

    hub: str
    device_id: str
    slot: KeySlot
    substatus: str | None
    payload: Any
    seconds: float

    def settings(self, secrets: DeviceSecrets) -> DeviceSettings:
        """The settings.json content for this registration."""
        return DeviceSettings.for_device(
            hub=self.hub,
            device_id=self.device_id,
            primary_key=secrets.primary_key,
            secondary_key=secrets.secondary_key,
            payload=self.payload,
        )


def quiet_sdk_logs() -> None:
    """Keep the SDK's and paho's own log lines off the terminal.

    Below WARNING they print connection details; at WARNING and ERROR they report, from their
    threads, what the simulator already says in its own words (a refused key leaves "Unexpected
    disconnection" tracebacks behind). Only CRITICAL gets through.
    """
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


async def register(
    secrets: DeviceSecrets,
    target: Target,
    *,
    payload: Any = None,
    step: Step = lambda _: None,
    clock: Callable[[], float] = time.monotonic,
    waiting: Waiting | None = None,
) -> Registration:
    """Register with DPS, primary key first, secondary after a refused credential."""
    from azure.iot.device.aio import ProvisioningDeviceClient  # noqa: PLC0415 - heavy SDK
    from azure.iot.device.exceptions import CredentialError  # noqa: PLC0415

    replies = DpsReplies.install()
    started = clock()
    for slot, key in (
        (KeySlot.PRIMARY, secrets.primary_key),
        (KeySlot.SECONDARY, secrets.secondary_key),
    ):
        client = ProvisioningDeviceClient.create_from_symmetric_key(
            provisioning_host=secrets.provisioning_host,
            registration_id=secrets.registration_id,
            id_scope=secrets.id_scope,
            symmetric_key=key,
            **target.sdk_options(),
        )
        if payload is not None:
            client.provisioning_payload = payload
        try:
            result = await _while_assigning(client.register(), step, waiting, clock)
        except CredentialError:
            step(f"dps: the {slot} key was refused (not authorised)")
            await _release(client)
            continue
        except Exception as error:
            await _release(client)
            raise _registration_error(
                error, secrets, replies.error(secrets.registration_id)
            ) from None
        if result is None or result.status != "assigned" or result.registration_state is None:
            status = getattr(result, "status", None)
            raise RegistrationFailed(
                f"dps: registration ended with status {status!r}, not 'assigned'",
                reason=f"status {status}",
            )
        state = result.registration_state
        return Registration(
            hub=state.assigned_hub,
            device_id=state.device_id,
            slot=slot,
            substatus=state.sub_status,
            payload=_payload(state.response_payload),
            seconds=clock() - started,
        )
    raise KeysRefused(
        f"dps: both derived keys of {secrets.registration_id!r} were refused: the enrollment "
        "group's keys have changed. The device keys must be re-derived from the new group keys "
        "(python -m simulator derive-key ... --force) and installed on the device."
    )


async def _while_assigning(
    registering: Awaitable[Any], step: Step, waiting: Waiting | None, clock: Callable[[], float]
) -> Any:
    """Await the SDK's `register()`, saying every so often that DPS is still assigning, and why
    when `waiting` can tell."""
    task = asyncio.ensure_future(registering)
    started = clock()
    said, said_at = "", started
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=WAIT_REPORT_SECONDS)
            if done:
                return task.result()
            reason = (await asyncio.to_thread(waiting) if waiting is not None else None) or ""
            now = clock()
            if _gist(reason) != _gist(said) or now - said_at >= WAIT_REPEAT_SECONDS:
                line = f"dps: still assigning after {now - started:.0f} s"
                step(f"{line}: {reason}" if reason else line)
                said, said_at = reason, now
    finally:
        if not task.done():
            task.cancel()


def _gist(reason: str) -> str:
    """A waiting reason without its countdowns: said again only when something else changed."""
    return re.sub(r"\d+(?:\.\d+)? s\b", "", reason)


async def connect(
    settings: DeviceSettings,
    target: Target,
    *,
    step: Step = lambda _: None,
    prepare: Callable[[Any], None] = lambda _: None,
    **options: Any,
) -> tuple[Any, KeySlot]:
    """A connected `IoTHubDeviceClient`, primary connection string first; and the slot that worked.

    `prepare(client)` runs on the connected client before anything else: handlers set there also
    get what the hub delivered at connect (C2D messages queued while the device was offline).
    """
    from azure.iot.device.aio import IoTHubDeviceClient  # noqa: PLC0415 - heavy SDK
    from azure.iot.device.exceptions import CredentialError  # noqa: PLC0415

    candidates: tuple[tuple[KeySlot, ConnectionString], ...] = (
        (KeySlot.PRIMARY, settings.primary),
        (KeySlot.SECONDARY, settings.secondary),
    )
    for slot, connection in candidates:
        client = IoTHubDeviceClient.create_from_symmetric_key(
            symmetric_key=connection.shared_access_key,
            hostname=connection.host_name,
            device_id=connection.device_id,
            **target.sdk_options(),
            **options,
        )
        _keep_early_messages_for_handlers(client)
        try:
            await client.connect()
        except CredentialError:
            step(f"hub: the {slot} connection string was refused (not authorised)")
            await client.shutdown()
            continue
        except Exception as error:
            await client.shutdown()
            kind = ServerBusy if _refused_as_busy(error) else Unreachable
            raise kind(
                f"hub: cannot connect to {connection.host_name}: {_describe(error)}"
            ) from None
        prepare(client)
        return client, slot
    raise HubRefused(
        f"hub: {settings.assigned_hub} refused device {settings.device_id!r} with both connection "
        "strings (unknown or disabled device, or its keys changed)"
    )


def _keep_early_messages_for_handlers(client: Any) -> None:
    """Make a C2D message that arrives before `on_message_received` is set reach that handler.

    A hub delivers the C2D messages it queued for an offline device right after CONNACK (the
    session's subscription persists). azure-iot-device 2.14 files such a message in the inbox of
    its receive API until a handler has been set, and a handler set later reads another inbox: the
    message is stranded. Setting the handlers before `connect()` avoids that but makes the SDK
    connect inside the property setter, where a refused key can deadlock the client's shutdown.
    So the one switch the first handler would flip, "messages go to the handlers' inbox", is
    flipped here before connecting; the handlers are set right after. Best effort on the SDK's
    inbox manager: without it, behaviour is the SDK's own.
    """
    inbox = getattr(client, "_inbox_manager", None)
    if inbox is not None and hasattr(inbox, "use_unified_msg_mode"):
        inbox.use_unified_msg_mode = True


async def _release(client: Any) -> None:
    """Shut a failed registration's pipeline down.

    2.14.0's ProvisioningDeviceClient has no `shutdown()` and keeps its connection and timers
    after a failed registration (dps-mqtt.md §4): in a fleet that leaks a socket and a thread per
    denied device, and at exit a late timer prints a traceback. Best effort, on the SDK's own
    pipeline object; `register()` does the same after a success.
    """
    from azure.iot.device.common.async_adapter import AwaitableCallback  # noqa: PLC0415

    pipeline = getattr(client, "_pipeline", None)
    if pipeline is None:
        return
    done = AwaitableCallback()  # type: ignore[no-untyped-call]
    try:
        pipeline.shutdown(callback=done)
        await asyncio.wait_for(done.completion(), RELEASE_TIMEOUT)  # type: ignore[no-untyped-call]
    except Exception:  # noqa: S110 - already failed; the shutdown is only a courtesy
        pass


def _payload(text: object) -> Any:
    """The SDK hands the payload back as a JSON string (dps-mqtt.md §6)."""
    import json  # noqa: PLC0415

    if isinstance(text, str):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _registration_error(
    error: BaseException, secrets: DeviceSecrets, dps_error: DpsError | None = None
) -> SimulatorError:
    """Turn what `register()` raised into our error, with its cause in words."""
    from azure.iot.device.exceptions import ConnectionFailedError  # noqa: PLC0415

    who = repr(secrets.registration_id)
    cause = str(error.__cause__ or "")
    if isinstance(error, ConnectionFailedError):
        kind = ServerBusy if _refused_as_busy(error) else Unreachable
        return kind(f"dps: cannot reach {secrets.provisioning_host}: {_describe(error)}")
    if "failed registration status" in cause:
        if dps_error is None:
            return RegistrationFailed(
                f"dps: registration of {who} failed: the allocation policy or webhook refused it "
                "(or no linked hub could take it)",
                reason="failed (denied by the allocation policy or webhook)",
            )
        return RegistrationFailed(
            f"dps: registration of {who} failed with DPS error {dps_error.code}: "
            f"{dps_error.message}\n  likely cause: "
            f"{likely_cause(dps_error.code, dps_error.message)}",
            reason=f"failed {dps_error.code}: {dps_error.message}",
            error_code=dps_error.code,
        )
    if "invalid registration status" in cause:
        status = cause.split("invalid registration status", 1)[1].split(maxsplit=1)[0]
        return RegistrationFailed(
            f"dps: registration of {who} ended with status {status!r} "
            "(a disabled enrollment or device)",
            reason=f"status {status}",
        )
    if "service error status code" in cause:
        code = cause.rsplit(" ", 1)[-1]
        return RegistrationFailed(
            f"dps: registration of {who} refused with status code {code}",
            reason=f"status code {code}",
        )
    if "timed out" in cause:
        return Unreachable(f"dps: no answer to the registration of {who} within 30 s")
    return RegistrationFailed(
        f"dps: registration of {who} failed: {_describe(error)}", reason=type(error).__name__
    )


def _describe(error: BaseException) -> str:
    """The error and its cause as the SDK words them (they carry no keys)."""
    cause = error.__cause__
    text = f"{type(error).__name__}: {error}"
    return f"{text} ({type(cause).__name__}: {cause})" if cause is not None else text
