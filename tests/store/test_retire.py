"""Retire and reinstate: store first, then the hub through the HubRegistry seam; the result says what happened."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest

from store.base import DeviceNotFound, StoreTimeout
from store.deadline import Deadline, active, call_with_deadline
from store.memory import MemoryStore
from store.records import DeviceStatus, Outcome, RegistrationRecord
from store.retire import (
    HubRegistry,
    HubRegistryError,
    MemoryHubRegistry,
    registry_factory,
    reinstate,
    retire,
)
from store.settings import StoreSettings

T0 = datetime(2025, 4, 5, 6, 7, 8, tzinfo=UTC)
HUB = "hub-a.azure-devices.net"


def provisioned_store() -> MemoryStore:
    """A store with device d1 provisioned onto HUB."""
    store = MemoryStore()
    store.record_provisioning(
        RegistrationRecord(
            time=T0, registration_id="d1", device_id="d1", outcome=Outcome.ASSIGNED, hub=HUB
        )
    )
    return store


def test_retire_disables_the_device_in_its_hub() -> None:
    """With credentials, retire blocks provisioning and disables the identity."""
    store, hub = provisioned_store(), MemoryHubRegistry({"d1": True})
    result = retire(store, "d1", reason="lost", now=T0, hubs=lambda h: hub if h == HUB else None)
    assert result.hub_touched
    assert hub.devices["d1"] is False
    assert result.device.status is DeviceStatus.RETIRED
    assert "disabled in hub hub-a.azure-devices.net" in result.message
    back = reinstate(store, "d1", now=T0, hubs=lambda h: hub)
    assert back.hub_touched
    assert hub.devices["d1"] is True
    assert back.device.status is DeviceStatus.ACTIVE


def test_retire_without_credentials_still_blocks() -> None:
    """No credentials for the hub: the device is retired and the message says the hub was not touched."""
    store = provisioned_store()
    result = retire(store, "d1", reason=None, now=T0, hubs=lambda h: None)
    assert not result.hub_touched
    assert result.message == f"no credentials for hub {HUB}: provisioning blocked, hub not touched"
    device = store.get_device("d1")
    assert device is not None
    assert device.status is DeviceStatus.RETIRED


def test_hub_failure_keeps_the_retirement() -> None:
    """A failing hub call leaves the store change in place and reports it."""

    class Broken:
        def set_device_status(self, device_id: str, *, enabled: bool) -> None:
            raise HubRegistryError("hub registry answered 503")

    broken: HubRegistry = Broken()
    store = provisioned_store()
    result = retire(store, "d1", reason=None, now=T0, hubs=lambda h: broken)
    assert not result.hub_touched
    assert "hub registry answered 503" in result.message
    assert "hub not touched" in result.message
    assert store.get_device("d1").status is DeviceStatus.RETIRED  # type: ignore[union-attr]


def test_unknown_identity_in_hub_is_reported() -> None:
    """A hub without that identity: retired in the store, hub not touched."""
    result = retire(
        provisioned_store(), "d1", reason=None, now=T0, hubs=lambda h: MemoryHubRegistry()
    )
    assert not result.hub_touched
    assert "no identity 'd1'" in result.message


def test_retire_unknown_device() -> None:
    """Retiring a device the inventory does not know raises DeviceNotFound."""
    with pytest.raises(DeviceNotFound):
        retire(MemoryStore(), "ghost", reason=None, now=T0, hubs=lambda h: None)


def test_factory_without_settings_gives_none() -> None:
    """No connection string and no managed identity: no hub client."""
    assert registry_factory(StoreSettings())(HUB) is None


def test_importing_store_and_blueprint_loads_no_azure_sdk() -> None:
    """Cold start: importing the store package, retire and the blueprint loads neither SDK."""
    code = (
        "import sys, store.retire, store.runtime, store.replay, lifecycle_functions;"
        "print(sorted(m for m in sys.modules if m.startswith(('azure.iot', 'azure.data', 'uamqp'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_deadline_returns_raises_or_times_out() -> None:
    """call_with_deadline returns the value, re-raises errors, and gives up on time."""
    assert call_with_deadline(lambda: 7, 1.0) == 7
    with pytest.raises(KeyError):
        call_with_deadline(lambda: {}["x"], 1.0)
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(StoreTimeout, match=r"no answer within the 0\.2 s"):
        call_with_deadline(lambda: release.wait(5), 0.2)
    assert time.monotonic() - started < 1.0
    release.set()


def test_an_inline_call_runs_here_with_its_deadline_active() -> None:
    """inline=True: fn runs on the calling thread with the deadline `active()` (and only while it
    runs); with nothing left it is not called at all."""
    deadline = Deadline.after(1.0)
    assert active() is None
    seen = call_with_deadline(
        lambda: (threading.get_ident(), active()), deadline, what="inline", inline=True
    )
    assert seen == (threading.get_ident(), deadline)
    assert active() is None
    with pytest.raises(KeyError):
        call_with_deadline(lambda: {}["x"], deadline, inline=True)
    assert active() is None
    called = []
    with pytest.raises(StoreTimeout, match="no time left"):
        call_with_deadline(lambda: called.append(1), Deadline.after(0), inline=True)
    assert called == []


def test_calls_share_what_is_left_of_one_deadline() -> None:
    """A second call gets only what the first left; with nothing left it fails at once."""
    deadline = Deadline.after(0.3)
    call_with_deadline(lambda: time.sleep(0.2), deadline)
    started = time.monotonic()
    with pytest.raises(StoreTimeout):
        call_with_deadline(lambda: time.sleep(1), deadline)
    assert time.monotonic() - started < 0.2
    with pytest.raises(StoreTimeout, match="no time left"):
        call_with_deadline(lambda: 1, deadline)
