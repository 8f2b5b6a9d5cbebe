"""Event Grid delivery to `[events] url` over real HTTP (127.55.2.x): the subscription validation
handshake comes first, per hub; an endpoint that does not echo the code stops the start (the CLI
exits 2 naming the setting); failed deliveries are retried on Event Grid's schedule (scaled)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import redirect_stderr
from pathlib import Path

import pytest
from azure.iot.hub import IoTHubRegistryManager

from emulator.__main__ import main as emulator_main
from emulator.events.delivery import SubscriptionValidationFailed
from emulator.events.eventgrid import hub_topic
from tests.emulator.e2e.harness import (
    HEATPUMPS,
    HUB_TOML,
    TOASTERS,
    RunningEmulator,
    options,
    wait_for,
)
from tests.scripted_webhook import ScriptedWebhook

pytestmark = pytest.mark.e2e

BIND, REFUSING_BIND, CLI_BIND = "127.55.2.1", "127.55.2.2", "127.55.2.3"
EVENTS_PATH = "/api/events"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[ScriptedWebhook]:
    """An Event Grid webhook endpoint that validates; events get 500 once, then 202."""
    with ScriptedWebhook(BIND, key="events-key", validates=True) as server:
        server.by_path[EVENTS_PATH] = [(500, None), (202, None)]
        yield server


@pytest.fixture(scope="module")
def emulator(
    tmp_path_factory: pytest.TempPathFactory, endpoint: ScriptedWebhook
) -> Iterator[RunningEmulator]:
    """The emulator posting lifecycle events to the endpoint, Event Grid's times x 0.001."""
    run = options(
        tmp_path_factory.mktemp("events"),
        BIND,
        events_url=endpoint.url_for(f"{EVENTS_PATH}?code=events-key"),
        time_scale=0.001,
    )
    with RunningEmulator(run) as running:
        yield running


def test_each_hub_subscription_is_validated_before_any_event(
    emulator: RunningEmulator, endpoint: ScriptedWebhook
) -> None:
    """The first POSTs are one SubscriptionValidation per hub, with Event Grid's event shape."""
    handshakes = [r for r in endpoint.received if r.headers.get("aeg-event-type") != "Notification"]
    assert [r.headers["aeg-event-type"] for r in handshakes] == ["SubscriptionValidation"] * 2
    events = [r.json()[0] for r in handshakes]
    assert {event["topic"] for event in events} == {hub_topic(TOASTERS), hub_topic(HEATPUMPS)}
    assert {event["eventType"] for event in events} == {
        "Microsoft.EventGrid.SubscriptionValidationEvent"
    }
    assert all(event["data"]["validationCode"] for event in events)
    assert endpoint.received[: len(handshakes)] == handshakes


def test_a_refused_event_is_redelivered_with_the_same_id(
    emulator: RunningEmulator, endpoint: ScriptedWebhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device created with azure-iot-hub: its DeviceCreated gets 500, then comes again (same id,
    aeg-delivery-count 1) after Event Grid's first 10 s step, scaled."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.emulator.ca_path))
    strings = json.loads((emulator.emulator.options.state_dir / "hubs.json").read_text())
    IoTHubRegistryManager.from_connection_string(strings[TOASTERS]).create_device_with_sas(
        "evented-1", "", "", "enabled"
    )
    wait_for(lambda: len(endpoint.notifications) >= 2)
    first, second = endpoint.notifications[:2]
    assert first[0]["eventType"] == "Microsoft.Devices.DeviceCreated"
    assert first[0]["id"] == second[0]["id"]
    counts = [
        r.headers["aeg-delivery-count"]
        for r in endpoint.received
        if r.headers.get("aeg-event-type") == "Notification"
    ]
    assert counts[:2] == ["0", "1"]
    delivery = emulator.emulator.delivery
    assert delivery is not None
    wait_for(lambda: delivery.delivered == 1)


def test_an_endpoint_that_does_not_validate_stops_the_start(tmp_path: Path) -> None:
    """An endpoint answering 202 to everything (no validationResponse) fails the start."""
    with ScriptedWebhook(REFUSING_BIND) as plain:
        plain.by_path[EVENTS_PATH] = [(202, None)]
        run = options(tmp_path, REFUSING_BIND, events_url=plain.url_for(EVENTS_PATH))
        with pytest.raises(SubscriptionValidationFailed) as caught, RunningEmulator(run):
            pass
    assert "HTTP 202 (202 does not validate)" in str(caught.value)


def test_the_cli_exits_2_naming_the_events_setting(tmp_path: Path) -> None:
    """`python -m emulator run --events-url URL` with a non-validating endpoint: exit status 2
    and one line naming --events-url, the URL without its key, and what it answered."""
    config = tmp_path / "emulator.toml"
    config.touch(mode=0o600)
    config.write_text(HUB_TOML)
    with ScriptedWebhook(CLI_BIND) as plain:
        plain.by_path[EVENTS_PATH] = [(401, None)]
        stderr = io.StringIO()
        with redirect_stderr(stderr):
            code = emulator_main(
                [
                    "run",
                    "--config",
                    str(config),
                    "--state-dir",
                    str(tmp_path / "state"),
                    "--bind",
                    CLI_BIND,
                    "--events-url",
                    plain.url_for(f"{EVENTS_PATH}?code=secret-events-key"),
                ]
            )
    assert code == 2
    assert "--events-url" in stderr.getvalue()
    assert "HTTP 401" in stderr.getvalue()
    assert "secret-events-key" not in stderr.getvalue()
