"""Nothing secret in the logs: every log record of a whole emulator run, at DEBUG, on 127.46.1.1.

One run drives every path that handles a secret with the real SDKs: DPS registrations through our
own webhook (function key in the URL), a denied device, wrong keys at DPS and at the hub, hub
traffic, the service API with the right and a wrong policy key, the admin API regenerating a
generated group key, a webhook call with a wrong function key, and lifecycle events to the
Functions host (master key). Every record from every logger (the clients' own SDK loggers held at
WARNING, since the client side is not the emulator) must hold none of those keys, tokens or
connection strings. A failure names the logger and the kind of secret, never the secret itself.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest
from azure.iot.device import Message
from azure.iot.device.exceptions import ClientError, CredentialError
from azure.iot.hub import IoTHubRegistryManager
from msrest.exceptions import HttpOperationError

import function_app
from sas import derive_device_key
from store.memory import MemoryStore
from store.runtime import Runtime
from tests.emulator.e2e.harness import (
    RunningEmulator,
    device_client,
    emulator_toml,
    options,
    regenerate_group_key,
    register,
)

pytestmark = pytest.mark.e2e

BIND = "127.46.1.1"
GROUP_KEY = (
    "oiK77Oy7rBw8YB6IS6ukRChAw+Yq6GC61RMrPLSTiOOtdI+XDu0LmLuNm11p+qv2I+adqGUdZHm46zXAQdZoOA=="
)
GROUP_SECONDARY = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
SOLO_KEY = "OSANXEslinwdWI7CugTZIIMS97VdG65m3pD753neq7E="
SOLO_SECONDARY = "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM="
WRONG_KEY = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk="
FUNCTION_KEY = "hygiene-function-key-5f2c"
TOASTERS = "contoso-toasters-hub.azure-devices.net"
HEATPUMPS = "contoso-heatpumps-hub.azure-devices.net"
TOASTER = "breakroom499-contoso-tstrsd-007"
CLIENT_LOGGERS = (
    "azure.iot.device",
    "azure.iot.hub",
    "azure.core",
    "paho",
    "msrest",
    "urllib3",
    "uamqp",
)
# Fragments of SAS tokens and connection strings: none may reach a log line.
SECRET_SHAPES = ("SharedAccessSignature", "sig=", "SharedAccessKey=", "code=")

CONFIG = emulator_toml(
    hubs=[TOASTERS, HEATPUMPS],
    groups=[
        {
            "id": "contoso-custom",
            "primary_key": GROUP_KEY,
            "secondary_key": GROUP_SECONDARY,
            "allocation": "custom",
            "webhook_url": f"http://{BIND}:7071/api/allocate?code={FUNCTION_KEY}",
            "hubs": [TOASTERS, HEATPUMPS],
        },
        {"id": "generated", "allocation": "hashed"},
    ],
    individuals=[
        {
            "registration_id": "solo-1",
            "primary_key": SOLO_KEY,
            "secondary_key": SOLO_SECONDARY,
            "allocation": "static",
            "hubs": [TOASTERS],
        }
    ],
)


class Recorder(logging.Handler):
    """Keeps every record as its fully formatted text (traceback included) with its logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.name, self.format(record)))


@dataclass(frozen=True)
class Run:
    """What the run logged, and every secret it handled (label -> value)."""

    lines: tuple[tuple[str, str], ...]
    secrets: dict[str, str]

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def drive(emulator: RunningEmulator, secrets: dict[str, str]) -> None:
    """Every secret-carrying path once, with the real SDKs; new secrets are added to `secrets`."""
    state_dir = emulator.emulator.options.state_dir
    config = emulator.emulator.config
    assert config is not None
    generated = next(g for g in config.enrollment_groups if g.id == "generated")
    secrets |= {
        "generated group primary key": generated.primary_key,
        "generated group secondary key": generated.secondary_key,
        "master key": (state_dir / "master-key").read_text().strip(),
        "admin token": (state_dir / "admin-token").read_text().strip(),
    }
    strings: dict[str, str] = json.loads((state_dir / "hubs.json").read_text())
    for hub, string in strings.items():
        secrets[f"{hub} service policy key"] = string.rsplit("SharedAccessKey=", 1)[1]

    toaster_key = derive_device_key(GROUP_KEY, TOASTER)
    secrets["toaster device key"] = toaster_key
    state = register(emulator, TOASTER, toaster_key).registration_state
    client = device_client(emulator, state.assigned_hub, state.device_id, toaster_key)
    client.connect()
    try:
        client.get_twin()
        client.patch_twin_reported_properties({"firmware": "1.0"})
        message = Message("hello")  # type: ignore[no-untyped-call]
        message.custom_properties = {"kind": "greeting"}
        client.send_message(message)
    finally:
        client.shutdown()

    with pytest.raises(ClientError):
        register(emulator, "stranger-001", derive_device_key(GROUP_KEY, "stranger-001"))
    with pytest.raises(CredentialError):
        register(emulator, "solo-1", WRONG_KEY)
    assert register(emulator, "solo-1", SOLO_KEY).status == "assigned"
    intruder = device_client(emulator, TOASTERS, "solo-1", WRONG_KEY)
    try:
        with pytest.raises(CredentialError):
            intruder.connect()
    finally:
        intruder.shutdown()

    hashed_key = derive_device_key(generated.primary_key, "hashed-001")
    secrets["hashed device key"] = hashed_key
    assert register(emulator, "hashed-001", hashed_key).status == "assigned"
    secrets["regenerated group key"] = regenerate_group_key(emulator, "generated", "primary")
    with pytest.raises(CredentialError):
        register(emulator, "hashed-002", derive_device_key(generated.primary_key, "hashed-002"))

    registry = IoTHubRegistryManager.from_connection_string(strings[TOASTERS])
    created = registry.create_device_with_sas("service-made", "", "", "enabled")
    secrets["service-made primary key"] = created.authentication.symmetric_key.primary_key
    secrets["service-made secondary key"] = created.authentication.symmetric_key.secondary_key
    registry.get_twin("service-made")
    wrong = strings[TOASTERS].rsplit("SharedAccessKey=", 1)[0] + f"SharedAccessKey={WRONG_KEY}"
    with pytest.raises(HttpOperationError):
        IoTHubRegistryManager.from_connection_string(wrong).get_device("service-made")
    registry.delete_device("service-made")

    denied = urllib.request.Request(
        f"http://{BIND}:7071/api/allocate?code={WRONG_KEY}", data=b"{}", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(denied, timeout=5)  # noqa: S310 - a fixed http URL on loopback
    assert refused.value.code == 401
    refused.value.close()
    delivery = emulator.emulator.delivery
    assert delivery is not None
    assert emulator.call(lambda: delivery.delivered) >= 1


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Start, drive and stop the emulator with every log record kept at DEBUG."""
    recorder = Recorder()
    root = logging.getLogger()
    saved = root.level, {name: logging.getLogger(name).level for name in CLIENT_LOGGERS}
    root.addHandler(recorder)
    root.setLevel(logging.DEBUG)
    for name in CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    secrets = {
        "group primary key": GROUP_KEY,
        "group secondary key": GROUP_SECONDARY,
        "individual primary key": SOLO_KEY,
        "individual secondary key": SOLO_SECONDARY,
        "wrong key": WRONG_KEY,
        "function key": FUNCTION_KEY,
    }
    try:
        with pytest.MonkeyPatch.context() as patch:
            run_options = options(
                tmp_path_factory.mktemp("hygiene"),
                BIND,
                CONFIG,
                host_functions=True,
                function_key=FUNCTION_KEY,
                functions_bind=BIND,
                service_port=0,
                persist=True,
                state_interval=0.05,
            )
            with (
                function_app.configured(
                    settings={"ALLOCATION_POLICY_FILE": "examples/tutorial-policy.toml"},
                    runtime=Runtime(store=MemoryStore(), hubs=lambda hub: None),
                ),
                RunningEmulator(run_options) as running,
            ):
                patch.setenv("REQUESTS_CA_BUNDLE", str(running.emulator.ca_path))
                drive(running, secrets)
    finally:
        root.removeHandler(recorder)
        root.setLevel(saved[0])
        for name, level in saved[1].items():
            logging.getLogger(name).setLevel(level)
    return Run(tuple(recorder.lines), secrets)


def test_the_capture_saw_every_secret_path(run: Run) -> None:
    """The log holds the events the run caused, so the hygiene check below is not vacuous."""
    text = run.text()
    for expected in (
        f"DPS registration '{TOASTER}' assigned to",
        "DPS CONNECT refused for 'solo-1'",
        "hub refused hub=contoso-toasters-hub.azure-devices.net client_id=solo-1",
        "DPS registration 'stranger-001' failed: 400207",
        "functions host: POST /allocate -> 200",
        "functions host: POST /api/allocate -> 401",
        "-> 401 hub=contoso-toasters-hub.azure-devices.net",
        "admin: regenerated the primary key of group enrollment 'generated'",
        "functions host: Event Grid device_lifecycle",
        "generated 2 enrollment key(s)",
    ):
        assert expected in text, f"no log line contains {expected!r}"


def test_a_clean_run_logs_no_error(run: Run) -> None:
    """Start, traffic, refusals and shutdown (with a service client still connected) log no ERROR."""
    errors = [
        line.splitlines()[0] for _, line in run.lines if line.startswith(("ERROR", "CRITICAL"))
    ]
    assert errors == []


def test_no_key_token_or_connection_string_in_any_log_line(run: Run) -> None:
    """No record from any logger holds a key, a SAS token or a connection string."""
    values = list(run.secrets.values())
    assert len(values) >= 15
    assert len(set(values)) == len(values)  # real, distinct values
    leaks = [
        (logger, label)
        for logger, line in run.lines
        for label, secret in run.secrets.items()
        if secret in line
    ]
    leaks += [
        (logger, f"'{shape}'")
        for logger, line in run.lines
        for shape in SECRET_SHAPES
        if shape in line
    ]
    assert leaks == [], f"secrets in the log (logger, what): {sorted(set(leaks))}"
