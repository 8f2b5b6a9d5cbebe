"""Tests for emulator.dps.service: DPS driven through its MqttEndpoint methods, no sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from emulator.config import EmulatorConfig, parse_config
from emulator.dps import service as dps_service
from emulator.dps.service import Attempt, DpsService
from emulator.dps.webhook import (
    FunctionWebhook,
    HttpWebhook,
    Webhook,
    WebhookResponse,
    WebhookUnavailable,
)
from emulator.dps.wire import RegistrationStatus
from emulator.hub.directory import Hubs
from sas.keys import derive_device_key
from sas.token import generate_sas_token
from tests.scripted_webhook import ScriptedWebhook

NOW = 1_700_000_000.0
GROUP_PRIMARY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
GROUP_SECONDARY = "iZlcsgZYcqfw02/f1mcrIYTcbCmWZSgIgQ4ED9Kp/fE="
TOASTERS = "toasters.azure-devices.net"
HEATPUMPS = "heatpumps.azure-devices.net"
WEBHOOK_URL = "http://127.0.0.1:7071/api/allocate?code=the-function-key"
REGISTER = "$dps/registrations/PUT/iotdps-register/?$rid={rid}"
POLL = "$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={op}"


def make_config(**group: Any) -> EmulatorConfig:
    """Two hubs, one custom group (overridable), one static individual enrollment."""
    entry = {
        "id": "contoso",
        "primary_key": GROUP_PRIMARY,
        "secondary_key": GROUP_SECONDARY,
        "allocation": "custom",
        "webhook_url": WEBHOOK_URL,
        "initial_twin": {"tags": {"from": "enrollment"}},
        **group,
    }
    if entry["allocation"] != "custom":
        entry.pop("webhook_url")
    return parse_config(
        {
            "hubs": [{"name": TOASTERS}, {"name": HEATPUMPS}],
            "enrollment_groups": [entry],
            "individual_enrollments": [
                {
                    "registration_id": "solo",
                    "device_id": "solo-device",
                    "primary_key": GROUP_SECONDARY,
                    "secondary_key": GROUP_PRIMARY,
                    "allocation": "static",
                    "hubs": [HEATPUMPS],
                }
            ],
        },
        source="test.toml",
    )


class Sleeps:
    """An injected sleep that records the waits and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        """Record a wait."""
        self.waits.append(seconds)


class Device:
    """One DPS client connection, speaking through the endpoint methods like the shell does."""

    def __init__(self, service: DpsService, registration_id: str, key: str) -> None:
        self.service = service
        self.registration_id = registration_id
        self.key = key
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.rid = 0
        self.retry_after = 3  # what DPS's 202s say at time scale 1

    def send(self, topic: str, payload: bytes) -> None:
        """The shell's Send: record what DPS publishes to this client."""
        self.received.append((topic, json.loads(payload)))

    def connect(self, *, expiry: float = NOW + 3600) -> int:
        """CONNECT with a token signed by `key`, the way the Python SDK builds it."""
        token = generate_sas_token(
            f"0ne00000001/registrations/{self.registration_id}", self.key, int(expiry)
        )
        return self.service.connect(
            client_id=self.registration_id,
            username=f"0ne00000001/registrations/{self.registration_id}/api-version=2019-03-31",
            password=token.encode(),
            send=self.send,
            close=lambda: None,
            now=NOW,
        )

    def publish(self, topic: str, body: bytes) -> tuple[str, dict[str, Any]]:
        """Publish and return DPS's immediate answer."""
        before = len(self.received)
        self.service.publish(
            client_id=self.registration_id, topic=topic, payload=body, send=self.send, now=NOW
        )
        assert len(self.received) == before + 1
        return self.received[-1]

    def register(self, payload: object = None) -> str:
        """Send a register request; return the operation id from the 202."""
        self.rid += 1
        body = json.dumps({"payload": payload, "registrationId": self.registration_id}).encode()
        topic, answer = self.publish(REGISTER.format(rid=self.rid), body)
        assert (
            topic == f"$dps/registrations/res/202/?$rid={self.rid}&retry-after={self.retry_after}"
        )
        assert set(answer) == {"operationId", "status"}  # the register's 202: no state yet
        assert answer["status"] == "assigning"
        return str(answer["operationId"])

    def poll(self, operation_id: str) -> tuple[str, dict[str, Any]]:
        """Send a status poll; return DPS's answer."""
        self.rid += 1
        return self.publish(POLL.format(rid=self.rid, op=operation_id), b" ")

    async def provision(self, payload: object = None) -> dict[str, Any]:
        """Register, let the allocation finish, poll once; return the final body."""
        operation_id = self.register(payload)
        await self.service.idle()
        topic, body = self.poll(operation_id)
        assert topic == f"$dps/registrations/res/200/?$rid={self.rid}"
        return body


def group_device(service: DpsService, registration_id: str = "dev-001") -> Device:
    """A connected device of the group, using its derived primary key."""
    device = Device(service, registration_id, derive_device_key(GROUP_PRIMARY, registration_id))
    assert device.connect() == 0
    return device


def build(
    webhook: Webhook, *, sleeps: Sleeps | None = None, **group: Any
) -> tuple[DpsService, Hubs]:
    """A DPS service over real in-memory hubs."""
    config = make_config(**group)
    hubs = Hubs(config.hubs, clock=lambda: NOW)
    service = DpsService(config, hubs, webhook, clock=lambda: NOW, sleep=sleeps or Sleeps())
    return service, hubs


def answering(*answers: WebhookResponse) -> FunctionWebhook:
    """A fake webhook giving these answers in turn (the last one repeats)."""
    queue = list(answers)
    return FunctionWebhook(lambda url, body: queue.pop(0) if len(queue) > 1 else queue[0])


def to_hub(hub: str, **extra: Any) -> WebhookResponse:
    """A 200 answer assigning `hub`."""
    return FunctionWebhook.json(200, {"iotHubHostName": hub, **extra})


def test_custom_group_registration_assigns_with_twin_and_payload() -> None:
    """A group device lands on the webhook's hub with its twin, keys and payload echoed."""
    webhook = answering(
        to_hub(TOASTERS, initialTwin={"tags": {"t": 1}}, payload={"hello": "world"})
    )
    service, hubs = build(webhook)

    async def scenario() -> dict[str, Any]:
        return await group_device(service).provision({"fw": "1.2.3"})

    body = asyncio.run(scenario())
    state = body["registrationState"]
    assert (body["status"], state["assignedHub"], state["deviceId"]) == (
        "assigned",
        TOASTERS,
        "dev-001",
    )
    assert (state["substatus"], state["payload"]) == ("initialAssignment", {"hello": "world"})
    identity = hubs.hub(TOASTERS).device("dev-001")
    assert identity is not None
    assert identity.primary_key == derive_device_key(GROUP_PRIMARY, "dev-001")
    assert identity.secondary_key == derive_device_key(GROUP_SECONDARY, "dev-001")
    twin = hubs.device_twin(TOASTERS, "dev-001")
    assert twin is not None
    assert twin.tags == {"t": 1}
    ((url, request),) = webhook.calls
    assert url == WEBHOOK_URL
    assert request["deviceRuntimeContext"]["payload"] == {"fw": "1.2.3"}
    assert request["linkedHubs"] == [TOASTERS, HEATPUMPS]
    text = json.dumps(request)
    assert "the-function-key" not in text
    assert GROUP_PRIMARY not in text


def test_poll_while_the_webhook_runs_answers_202() -> None:
    """Until the webhook answers, polls get 202 with retry-after 3 and DPS's assigning state."""

    async def scenario() -> tuple[str, dict[str, Any], str, str]:
        gate = asyncio.Event()

        async def slow(url: str, body: Any) -> WebhookResponse:
            await gate.wait()
            return to_hub(HEATPUMPS)

        service, _ = build(FunctionWebhook(slow))
        device = group_device(service)
        operation_id = device.register()
        await asyncio.sleep(0)
        during, assigning = device.poll(operation_id)
        gate.set()
        await service.idle()
        after, body = device.poll(operation_id)
        return during, assigning, body["status"], after.split("?")[0]

    during, assigning, final, after = asyncio.run(scenario())
    assert during.startswith("$dps/registrations/res/202/")
    assert during.endswith("&retry-after=3")
    assert assigning["status"] == "assigning"
    assert assigning["registrationState"] == {"registrationId": "dev-001", "status": "assigning"}
    assert (final, after) == ("assigned", "$dps/registrations/res/200/")


def test_time_scale_shrinks_retry_after_but_never_below_one_second() -> None:
    """retry-after is DPS's 3 s scaled by time_scale, an integer of at least 1."""
    assert [dps_service.retry_after(scale) for scale in (1.0, 2.0, 0.5, 0.01)] == [3, 6, 2, 1]


def test_hashed_and_static_allocation_need_no_webhook() -> None:
    """Hashed groups and static individuals are assigned natively, with the enrollment twin."""
    webhook = FunctionWebhook(lambda url, body: pytest.fail("webhook must not be called"))
    service, hubs = build(webhook, allocation="hashed")

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        group = await group_device(service).provision()
        solo = Device(service, "solo", GROUP_SECONDARY)
        assert solo.connect() == 0
        return group, await solo.provision()

    group, solo = asyncio.run(scenario())
    assert group["registrationState"]["assignedHub"] in (TOASTERS, HEATPUMPS)
    twin = hubs.device_twin(group["registrationState"]["assignedHub"], "dev-001")
    assert twin is not None
    assert twin.tags == {"from": "enrollment"}
    assert (solo["registrationState"]["assignedHub"], solo["registrationState"]["deviceId"]) == (
        HEATPUMPS,
        "solo-device",
    )
    assert hubs.hub(HEATPUMPS).device("solo-device") is not None


def test_disabled_enrollment_ends_disabled() -> None:
    """A disabled group's device connects, and its registration ends in status disabled."""
    service, hubs = build(answering(to_hub(TOASTERS)), enabled=False)
    body = asyncio.run(group_device(service).provision())
    assert body["status"] == "disabled"
    assert hubs.hub(TOASTERS).device("dev-001") is None


@pytest.mark.parametrize(
    ("answer", "code", "message"),
    [
        (FunctionWebhook.json(400, {"error": "no"}), 400207, "status code: 400"),
        (FunctionWebhook.json(401, {}), 400209, "unauthorized"),
        (to_hub(""), 400208, "did not specify"),
        (to_hub("elsewhere.azure-devices.net"), 400207, "not linked"),
    ],
)
def test_webhook_refusals_fail_the_registration(
    answer: WebhookResponse, code: int, message: str
) -> None:
    """Deny, 401, empty hub and unlinked hub end failed with DPS's error code, no device made."""
    service, hubs = build(answering(answer))
    body = asyncio.run(group_device(service).provision())
    state = body["registrationState"]
    assert (body["status"], state["errorCode"]) == ("failed", code)
    assert message in state["errorMessage"]
    assert all(hub.device("dev-001") is None for hub in hubs)


def test_5xx_then_200_is_retried_on_dps_schedule() -> None:
    """500, 429, then 200: assigned after waits of 1 s and 10 s."""
    sleeps = Sleeps()
    webhook = answering(
        FunctionWebhook.json(500, {}), FunctionWebhook.json(429, {}), to_hub(TOASTERS)
    )
    service, _ = build(webhook, sleeps=sleeps)
    body = asyncio.run(group_device(service).provision())
    assert body["status"] == "assigned"
    assert sleeps.waits == [1, 10]
    assert len(webhook.calls) == 3


def test_persistent_5xx_fails_after_ten_retries() -> None:
    """A webhook that always answers 503 is called 11 times, then the registration fails."""
    sleeps = Sleeps()
    webhook = answering(FunctionWebhook.json(503, {}))
    service, _ = build(webhook, sleeps=sleeps)
    body = asyncio.run(group_device(service).provision())
    assert body["registrationState"]["errorMessage"].endswith("status code: 503")
    assert len(webhook.calls) == 11
    assert sum(sleeps.waits) == 415


def test_time_scale_shrinks_the_retry_waits() -> None:
    """With time_scale 0.01 the waits are a hundredth of DPS's."""
    config = make_config()
    sleeps = Sleeps()
    webhook = answering(FunctionWebhook.json(502, {}), to_hub(TOASTERS))
    hubs = Hubs(config.hubs, clock=lambda: NOW)
    service = DpsService(config, hubs, webhook, time_scale=0.01, clock=lambda: NOW, sleep=sleeps)
    device = group_device(service)
    device.retry_after = 1
    asyncio.run(device.provision())
    assert sleeps.waits == [pytest.approx(0.01)]


def test_unreachable_webhook_is_retried_then_fails() -> None:
    """A webhook that never answers fails the registration with 400207 after the retries."""

    def down(url: str, body: Any) -> WebhookResponse:
        raise WebhookUnavailable("http://127.0.0.1:7071/api/allocate?****: ConnectionRefusedError")

    webhook = FunctionWebhook(down)
    service, _ = build(webhook)
    body = asyncio.run(group_device(service).provision())
    assert body["registrationState"]["errorCode"] == 400207
    assert len(webhook.calls) == 11


def reprovision(policy: str, second_hub: str) -> tuple[dict[str, Any], Hubs, FunctionWebhook]:
    """Provision to toasters, report a property, re-register with the webhook choosing again."""
    webhook = answering(
        to_hub(TOASTERS, initialTwin={"tags": {"round": 1}}),
        to_hub(second_hub, initialTwin={"tags": {"round": 2}}),
    )
    service, hubs = build(webhook, reprovision=policy)

    async def scenario() -> dict[str, Any]:
        device = group_device(service)
        await device.provision()
        twin = hubs.device_twin(TOASTERS, "dev-001")
        assert twin is not None
        hubs.upsert_device(
            TOASTERS,
            "dev-001",
            primary_key=device.key,
            secondary_key=device.key,
            twin=twin.patch_reported({"kept": True}, now=NOW),
        )
        return await device.provision()

    return asyncio.run(scenario()), hubs, webhook


def test_migrate_moves_the_twin_and_removes_the_old_device() -> None:
    """Migrate: the device and its reported twin move to the new hub, the old hub forgets it."""
    body, hubs, webhook = reprovision("migrate", HEATPUMPS)
    state = body["registrationState"]
    assert (state["assignedHub"], state["substatus"]) == (HEATPUMPS, "deviceDataMigrated")
    assert hubs.hub(TOASTERS).device("dev-001") is None
    twin = hubs.device_twin(HEATPUMPS, "dev-001")
    assert twin is not None
    assert (twin.reported, twin.tags) == ({"kept": True}, {"round": 1})
    context = webhook.calls[1][1]["deviceRuntimeContext"]
    assert (context["currentIotHubHostName"], context["currentDeviceId"]) == (TOASTERS, "dev-001")


def test_migrate_to_the_same_hub_keeps_the_twin() -> None:
    """Migrate to the same hub keeps the device data; substatus reprovisionedToInitialAssignment."""
    body, hubs, _ = reprovision("migrate", TOASTERS)
    assert body["registrationState"]["substatus"] == "reprovisionedToInitialAssignment"
    twin = hubs.device_twin(TOASTERS, "dev-001")
    assert twin is not None
    assert twin.reported == {"kept": True}


def test_reset_starts_the_twin_again() -> None:
    """Reset: the new hub gets the webhook's initial twin, reported data is gone."""
    body, hubs, _ = reprovision("reset", HEATPUMPS)
    assert body["registrationState"]["substatus"] == "deviceDataReset"
    twin = hubs.device_twin(HEATPUMPS, "dev-001")
    assert twin is not None
    assert (twin.reported, twin.tags) == ({}, {"round": 2})
    assert hubs.hub(TOASTERS).device("dev-001") is None


def test_reset_on_the_same_hub_is_a_factory_reset() -> None:
    """Reset without a hub change: the webhook's initial twin replaces the twin all the same."""
    body, hubs, _ = reprovision("reset", TOASTERS)
    state = body["registrationState"]
    assert (state["assignedHub"], state["substatus"]) == (
        TOASTERS,
        "reprovisionedToInitialAssignment",
    )
    twin = hubs.device_twin(TOASTERS, "dev-001")
    assert twin is not None
    assert (twin.reported, twin.tags) == ({}, {"round": 2})


def test_never_keeps_the_device_where_it_is() -> None:
    """Never: the webhook sees only the current hub; the device and its twin stay."""
    body, hubs, webhook = reprovision("never", TOASTERS)
    assert body["registrationState"]["assignedHub"] == TOASTERS
    assert webhook.calls[1][1]["linkedHubs"] == [TOASTERS]
    twin = hubs.device_twin(TOASTERS, "dev-001")
    assert twin is not None
    assert twin.reported == {"kept": True}


def test_never_ignores_a_webhook_naming_another_hub() -> None:
    """Never: a webhook naming another (even unlinked) hub does not fail the registration; the
    device stays on its hub, its twin untouched, and gets the webhook's new payload."""
    for other in (HEATPUMPS, "elsewhere.azure-devices.net"):
        webhook = answering(
            to_hub(TOASTERS),
            to_hub(other, initialTwin={"tags": {"round": 2}}, payload={"round": 2}),
        )
        service, hubs = build(webhook, reprovision="never")

        async def scenario(service: DpsService = service) -> dict[str, Any]:
            device = group_device(service)
            await device.provision()
            return await device.provision()

        state = asyncio.run(scenario())["registrationState"]
        assert (state["assignedHub"], state["payload"]) == (TOASTERS, {"round": 2})
        assert state["substatus"] == "reprovisionedToInitialAssignment"
        twin = hubs.device_twin(TOASTERS, "dev-001")
        assert twin is not None
        assert twin.tags == {"from": "enrollment"}  # the first assignment's, not round 2
        assert hubs.hub(HEATPUMPS).device("dev-001") is None


def test_never_still_fails_a_webhook_that_refuses() -> None:
    """Never keeps the hub, not a refusal: a 400 from the webhook still fails with 400207."""
    webhook = answering(to_hub(TOASTERS), FunctionWebhook.json(400, {"error": "no"}))
    service, _ = build(webhook, reprovision="never")

    async def scenario() -> dict[str, Any]:
        device = group_device(service)
        await device.provision()
        return await device.provision()

    state = asyncio.run(scenario())["registrationState"]
    assert (state["status"], state["errorCode"]) == ("failed", 400207)


def test_bad_credentials_are_refused_with_connack_5() -> None:
    """A wrong key and an expired token both get CONNACK 5."""
    service, _ = build(answering(to_hub(TOASTERS)))
    assert Device(service, "dev-001", GROUP_PRIMARY).connect() == 5
    good_key = derive_device_key(GROUP_SECONDARY, "dev-001")
    assert Device(service, "dev-001", good_key).connect(expiry=NOW - 1) == 5
    assert Device(service, "dev-001", good_key).connect() == 0


@pytest.mark.parametrize(
    ("topic", "body", "status", "code", "words"),
    [
        (POLL.format(rid="p", op="0.0000000000000000.nope"), b" ", 404, 404202, "not found"),
        (POLL.format(rid="p", op=""), b" ", 400, 400004, "operationId"),
        ("$dps/registrations/PUT/iotdps-elsewhere/?$rid=p", b"{}", 400, 400004, "topic"),
        (REGISTER.format(rid="p"), b"not json", 400, 400012, "Deserialization error."),
        (REGISTER.format(rid="p"), b"[1]", 400, 400012, "JSON object"),
        (
            REGISTER.format(rid="p"),
            b'{"registrationId": "dev-001", "modelId": "dtmi:x;1"}',
            400,
            400012,
            "'modelId'",
        ),
        (REGISTER.format(rid="p"), b'{"registrationId": 7}', 400, 400012, "registrationId"),
        (REGISTER.format(rid="p"), b'{"registrationId": "dev-002"}', 401, 401002, "Unauthorized"),
    ],
)
def test_bad_requests_get_dps_error_codes(
    topic: str, body: bytes, status: int, code: int, words: str
) -> None:
    """Each malformed request is answered on res/{status} with DPS's own error code."""
    service, _ = build(answering(to_hub(TOASTERS)))
    reply_topic, answer = group_device(service).publish(topic, body)
    assert reply_topic == f"$dps/registrations/res/{status}/?$rid=p"
    assert (answer["errorCode"], answer["trackingId"]) == (code, "")
    assert words in answer["message"]


def test_register_body_member_names_match_without_case() -> None:
    """`RegistrationId` and `Payload` are DPS's members too; the payload reaches the webhook."""
    webhook = answering(to_hub(TOASTERS))
    service, _ = build(webhook)

    async def scenario() -> str:
        device = group_device(service)
        topic, _ = device.publish(
            REGISTER.format(rid="c"), b'{"RegistrationId": "DEV-001", "Payload": {"a": 1}}'
        )
        await service.idle()
        return topic

    assert asyncio.run(scenario()).startswith("$dps/registrations/res/202/")
    assert webhook.calls[0][1]["deviceRuntimeContext"]["payload"] == {"a": 1}


def test_a_payload_model_id_is_recorded_for_operators() -> None:
    """The PnP modelId of a register payload is kept on the attempt operators see."""
    service, _ = build(answering(to_hub(TOASTERS)))
    asyncio.run(group_device(service).provision({"modelId": "dtmi:com:example:Thermostat;1"}))
    attempt = service.attempt("dev-001")
    assert attempt is not None
    assert attempt.to_json(NOW)["model_id"] == "dtmi:com:example:Thermostat;1"


def test_subscriptions_grant_only_the_response_topic() -> None:
    """SUBSCRIBE is granted for $dps/registrations/res/# only."""
    service, _ = build(answering(to_hub(TOASTERS)))
    assert service.subscribe(client_id="d", topic_filter="$dps/registrations/res/#")
    assert not service.subscribe(client_id="d", topic_filter="$iothub/#")


def test_publish_without_connect_is_dropped() -> None:
    """A PUBLISH for a client DPS never accepted gets no answer."""
    service, _ = build(answering(to_hub(TOASTERS)))
    sent: list[str] = []
    service.publish(
        client_id="ghost",
        topic=REGISTER.format(rid=1),
        payload=b"{}",
        send=lambda topic, payload: sent.append(topic),
        now=NOW,
    )
    assert sent == []


# --- the same flow with the real webhook client over real HTTP -------------------------------


@pytest.fixture
def allocator() -> Iterator[ScriptedWebhook]:
    """A real HTTP webhook with the function key `k`: it assigns dev-001 to heatpumps with a
    payload (401 without the key)."""
    with ScriptedWebhook("127.0.0.1", key="k") as webhook:
        webhook.by_registration["dev-001"] = [(200, {"iotHubHostName": HEATPUMPS, "payload": 7})]
        yield webhook


def test_real_http_webhook_assigns(allocator: ScriptedWebhook) -> None:
    """Through HttpWebhook and a real HTTP server the device is assigned with the payload."""
    service, hubs = build(HttpWebhook(timeout=5), webhook_url=allocator.url)
    body = asyncio.run(group_device(service).provision())
    assert body["status"] == "assigned"
    assert body["registrationState"]["assignedHub"] == HEATPUMPS
    assert body["registrationState"]["payload"] == 7
    assert hubs.hub(HEATPUMPS).device("dev-001") is not None


def test_real_http_webhook_with_a_wrong_key_fails_400209(allocator: ScriptedWebhook) -> None:
    """A real webhook answering 401 makes the registration fail with 400209."""
    wrong_key = allocator.url_for("/api/allocate?code=wrong")
    service, _ = build(HttpWebhook(timeout=5), webhook_url=wrong_key)
    body = asyncio.run(group_device(service).provision())
    assert body["registrationState"]["errorCode"] == 400209


# --- attempts: what operators see of each registration id ---------------------------------------


class Watching(Sleeps):
    """Sleeps that also note the attempt DPS shows for a registration id while it waits."""

    def __init__(self, registration_id: str = "dev-001") -> None:
        super().__init__()
        self.registration_id = registration_id
        self.service: DpsService | None = None
        self.seen: list[Attempt | None] = []

    async def __call__(self, seconds: float) -> None:
        """Record the wait and the attempt as it is during it."""
        await super().__call__(seconds)
        assert self.service is not None
        self.seen.append(self.service.attempt(self.registration_id))


def watched(webhook: Webhook, **group: Any) -> tuple[DpsService, Watching]:
    watching = Watching()
    service, _ = build(webhook, sleeps=watching, **group)
    watching.service = service
    return service, watching


def test_attempt_shows_the_webhooks_429s_and_the_next_call_then_the_assignment() -> None:
    """429, 429, 200: assigning with call count, status and next call time, then assigned."""
    refusal = FunctionWebhook.json(429, {"error": "store unavailable"})
    service, watching = watched(answering(refusal, refusal, to_hub(TOASTERS)))

    async def scenario() -> tuple[Attempt | None, dict[str, Any]]:
        device = group_device(service)
        operation_id = device.register()
        before_any_call = service.attempt("dev-001")
        await service.idle()
        return before_any_call, device.poll(operation_id)[1]

    before_any_call, body = asyncio.run(scenario())
    assert body["status"] == "assigned"
    assert before_any_call is not None
    assert (before_any_call.status, before_any_call.webhook_calls) == (
        RegistrationStatus.ASSIGNING,
        0,
    )
    assert before_any_call.enrollment == "group 'contoso'"
    first, second = watching.seen
    assert first is not None
    assert second is not None
    for number, waiting, delay in ((1, first, 1), (2, second, 10)):
        assert waiting.status is RegistrationStatus.ASSIGNING
        assert (waiting.webhook_calls, waiting.webhook_max_calls) == (number, 11)
        assert (waiting.webhook_status, waiting.webhook_error) == (429, None)
        assert waiting.webhook_answer == '{"error": "store unavailable"}'
        assert waiting.next_call_at == NOW + delay
        assert waiting.to_json(NOW)["next_call_in"] == delay
    final = service.attempt("DEV-001")
    assert final is not None
    assert (final.status, final.assigned_hub, final.device_id) == (
        RegistrationStatus.ASSIGNED,
        TOASTERS,
        "dev-001",
    )
    assert (final.webhook_calls, final.webhook_status, final.webhook_answer) == (3, 200, None)
    assert (final.next_call_at, final.error_code, final.error_message) == (None, None, None)
    assert service.attempts() == (final,)


def test_a_denied_device_ends_failed_with_the_start_of_the_webhooks_answer() -> None:
    """Webhook 400: failed 400207, and the webhook's body kept up to 300 characters."""
    reason = {"error": "denied", "rule": "pnp-devices", "detail": "x" * 400}
    service, _ = watched(answering(FunctionWebhook.json(400, reason)))
    asyncio.run(group_device(service).provision())
    attempt = service.attempt("dev-001")
    assert attempt is not None
    assert attempt.status is RegistrationStatus.FAILED
    assert (attempt.error_code, attempt.error_message) == (
        400207,
        "Custom allocation failed with status code: 400",
    )
    assert (attempt.webhook_calls, attempt.webhook_status) == (1, 400)
    text = json.dumps(reason)
    assert attempt.webhook_answer == text[:300] + "..."
    assert (attempt.assigned_hub, attempt.device_id, attempt.next_call_at) == (None, None, None)


def test_a_short_refusal_is_kept_whole() -> None:
    """A webhook answer under 300 characters is kept as it came."""
    service, _ = watched(answering(WebhookResponse(400, b"no rule matched")))
    asyncio.run(group_device(service).provision())
    attempt = service.attempt("dev-001")
    assert attempt is not None
    assert attempt.webhook_answer == "no rule matched"


def test_an_unreachable_webhook_shows_why_then_fails() -> None:
    """No answer: each wait shows the error and no status; after 11 calls the attempt failed."""

    def down(url: str, body: Any) -> WebhookResponse:
        raise WebhookUnavailable("http://127.0.0.1:7071/api/allocate?****: ConnectionRefusedError")

    service, watching = watched(FunctionWebhook(down))
    asyncio.run(group_device(service).provision())
    assert len(watching.seen) == 10
    waiting = watching.seen[0]
    assert waiting is not None
    assert (waiting.webhook_status, waiting.webhook_answer) == (None, None)
    assert waiting.webhook_error is not None
    assert "ConnectionRefusedError" in waiting.webhook_error
    final = service.attempt("dev-001")
    assert final is not None
    assert (final.status, final.error_code, final.webhook_calls) == (
        RegistrationStatus.FAILED,
        400207,
        11,
    )
    assert final.next_call_at is None
    assert "the-function-key" not in json.dumps(final.to_json(NOW))


def test_a_disabled_enrollment_ends_the_attempt_disabled() -> None:
    """A disabled group: the attempt ends disabled, the webhook never called."""
    service, _ = watched(answering(to_hub(TOASTERS)), enabled=False)
    asyncio.run(group_device(service).provision())
    attempt = service.attempt("dev-001")
    assert attempt is not None
    assert (attempt.status, attempt.webhook_calls, attempt.error_code) == (
        RegistrationStatus.DISABLED,
        0,
        None,
    )


def test_attempts_keep_the_latest_per_id_in_order_of_change() -> None:
    """A registration id registering again replaces its attempt and moves to the end."""
    service, _ = watched(
        answering(FunctionWebhook.json(400, {}), to_hub(TOASTERS), to_hub(HEATPUMPS))
    )

    async def scenario() -> None:
        first = group_device(service, "dev-a")
        await first.provision()  # denied
        await group_device(service, "dev-b").provision()  # toasters
        await first.provision()  # heatpumps

    asyncio.run(scenario())
    assert [(a.registration_id, a.status, a.assigned_hub) for a in service.attempts()] == [
        ("dev-b", RegistrationStatus.ASSIGNED, TOASTERS),
        ("dev-a", RegistrationStatus.ASSIGNED, HEATPUMPS),
    ]
    assert service.attempt("dev-a") == service.attempts()[-1]
    assert service.attempt("never-seen") is None


def test_attempts_are_bounded_oldest_first() -> None:
    """Past MAX_ATTEMPTS registration ids the oldest attempt is forgotten."""
    service, _ = build(answering(to_hub(TOASTERS)), allocation="hashed")
    count = dps_service.MAX_ATTEMPTS + 1

    async def scenario() -> None:
        for number in range(count):
            group_device(service, f"d{number}").register()
        await service.idle()

    asyncio.run(scenario())
    attempts = service.attempts()
    assert len(attempts) == dps_service.MAX_ATTEMPTS
    assert (attempts[0].registration_id, attempts[-1].registration_id) == ("d1", f"d{count - 1}")
    assert service.attempt("d0") is None


def admitted_by(**settings: Any) -> tuple[DpsService, FunctionWebhook, Any]:
    """A DPS service over real hubs whose admission is `Quotas` with these settings."""
    from emulator.quotas.limits import Quotas, QuotaSettings  # noqa: PLC0415

    webhook = answering(to_hub(TOASTERS))
    config = make_config()
    limits = Quotas(QuotaSettings(**settings), config.hubs, now=NOW)
    hubs = Hubs(config.hubs, clock=lambda: NOW)
    service = DpsService(config, hubs, webhook, clock=lambda: NOW, sleep=Sleeps(), admission=limits)
    return service, webhook, limits


def test_a_refused_register_gets_429_and_starts_nothing() -> None:
    """The minute's registrations used up: 429 429001 with retry-after 1 (a token is a second
    away); no operation, no allocation, no webhook call."""
    service, webhook, limits = admitted_by(dps_registrations_per_minute=60)
    for _ in range(60):
        assert limits.register(NOW, assigning=0) is None

    async def scenario() -> tuple[str, dict[str, Any]]:
        device = group_device(service)
        return device.publish(
            REGISTER.format(rid="r1"), json.dumps({"registrationId": "dev-001"}).encode()
        )

    topic, body = asyncio.run(scenario())
    assert topic == "$dps/registrations/res/429/?$rid=r1&retry-after=1"
    assert (body["errorCode"], body["message"]) == (
        429001,
        "Operations are being throttled for this tenant.",
    )
    assert service.assigning == 0
    assert webhook.calls == []
    assert service.attempt("dev-001") is None


def test_a_poll_over_the_devices_quota_gets_429_then_the_answer() -> None:
    """One poll per window: the first poll is answered (assigned), the next refused with the
    seconds until the window frees."""
    service, _, _ = admitted_by(dps_polls_per_device=1)

    async def scenario() -> tuple[dict[str, Any], tuple[str, dict[str, Any]]]:
        device = group_device(service)
        operation = device.register()
        await service.idle()
        return device.poll(operation)[1], device.poll(operation)

    first, (topic, body) = asyncio.run(scenario())
    assert first["status"] == "assigned"
    assert topic.startswith("$dps/registrations/res/429/")
    assert topic.endswith("&retry-after=10")
    assert body["errorCode"] == 429001
