"""DPS operations are kept fairly: one registration id's register flood evicts only its own."""

from __future__ import annotations

import asyncio

import pytest

from emulator.dps import service as dps_service
from emulator.dps.webhook import FunctionWebhook, WebhookResponse
from tests.emulator.dps.test_service import TOASTERS, answering, build, group_device, to_hub

FLOOD = 50  # register requests from one id, many more than it may keep
SMALL_TOTAL = 8  # MAX_OPERATIONS in these tests, so that a flood of FLOOD would overflow it


def status(topic: str) -> int:
    """The status code of a DPS reply topic (`$dps/registrations/res/<status>/?...`)."""
    return int(topic.split("/")[3])


@pytest.fixture
def small_total(monkeypatch: pytest.MonkeyPatch) -> int:
    """MAX_OPERATIONS made small, so that eviction happens after a few dozen registers."""
    monkeypatch.setattr(dps_service, "MAX_OPERATIONS", SMALL_TOTAL)
    return SMALL_TOTAL


def test_a_flood_from_one_id_does_not_evict_another_ids_operation(small_total: int) -> None:
    """After another id sends many registers, a device's operation still answers its polls."""
    service, _ = build(answering(to_hub(TOASTERS)), allocation="hashed")

    async def scenario() -> tuple[str, str, str]:
        device = group_device(service, "dev-001")
        operation_id = device.register()
        flooder = group_device(service, "flooder")
        for _ in range(FLOOD):
            flooder.register()
        during, _ = device.poll(operation_id)
        await service.idle()
        after, body = device.poll(operation_id)
        return during, after, body["status"]

    during, after, final = asyncio.run(scenario())
    assert (status(during), status(after), final) == (202, 200, "assigned")


def test_a_flooding_id_keeps_only_its_last_few_operations(small_total: int) -> None:
    """The flooding id's newest OPERATIONS_PER_REGISTRATION operations resolve, older ones 404."""
    service, _ = build(answering(to_hub(TOASTERS)), allocation="hashed")
    kept = dps_service.OPERATIONS_PER_REGISTRATION
    assert kept < small_total  # the per-id bound, not the total, must do the evicting here

    async def scenario() -> list[str]:
        flooder = group_device(service, "flooder")
        operation_ids = [flooder.register() for _ in range(FLOOD)]
        await service.idle()
        return [flooder.poll(operation_id)[0] for operation_id in operation_ids]

    answers = asyncio.run(scenario())
    assert [status(topic) for topic in answers] == [404] * (FLOOD - kept) + [200] * kept


def test_many_ids_are_still_bounded_in_all_oldest_first(small_total: int) -> None:
    """Past MAX_OPERATIONS distinct ids the oldest id's operation goes; the rest resolve."""
    service, _ = build(answering(to_hub(TOASTERS)), allocation="hashed")
    count = small_total + 2

    async def scenario() -> list[str]:
        devices = [group_device(service, f"d{number}") for number in range(count)]
        operation_ids = [device.register() for device in devices]
        await service.idle()
        return [
            device.poll(operation_id)[0]
            for device, operation_id in zip(devices, operation_ids, strict=True)
        ]

    answers = asyncio.run(scenario())
    assert [status(topic) for topic in answers] == [404] * 2 + [200] * (count - 2)


def test_an_id_evicted_by_the_total_bound_can_register_again(small_total: int) -> None:
    """An id whose operation fell to the total bound gets a new operation that resolves."""
    service, _ = build(answering(to_hub(TOASTERS)), allocation="hashed")

    async def scenario() -> tuple[str, str]:
        first = group_device(service, "d-first")
        old_operation = first.register()
        for number in range(small_total):
            group_device(service, f"d{number}").register()
        await service.idle()
        evicted, _ = first.poll(old_operation)
        new_operation = first.register()
        await service.idle()
        resolved, _ = first.poll(new_operation)
        return evicted, resolved

    evicted, resolved = asyncio.run(scenario())
    assert (status(evicted), status(resolved)) == (404, 200)


def test_the_newest_operation_stays_pollable_while_older_ones_finish() -> None:
    """With 8 registers in flight, finishing the first 4 leaves the newest one pollable."""
    gates: list[asyncio.Event] = []

    async def gated(url: str, body: object) -> WebhookResponse:
        gate = asyncio.Event()
        gates.append(gate)
        await gate.wait()
        return FunctionWebhook.json(200, {"iotHubHostName": TOASTERS})

    service, _ = build(FunctionWebhook(gated))
    in_flight = 2 * dps_service.OPERATIONS_PER_REGISTRATION

    async def scenario() -> str:
        device = group_device(service, "dev-001")
        operation_ids = [device.register() for _ in range(in_flight)]
        while len(gates) < in_flight:
            await asyncio.sleep(0)
        for gate in gates[: dps_service.OPERATIONS_PER_REGISTRATION]:
            gate.set()
        for _ in range(50):  # no I/O: a few loop turns let the released allocations finish
            await asyncio.sleep(0)
        newest, _ = device.poll(operation_ids[-1])
        for gate in gates:
            gate.set()
        await service.idle()
        return newest

    assert status(asyncio.run(scenario())) == 202
