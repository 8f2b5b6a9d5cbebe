"""The web console in a real browser (headless Chromium, Playwright), with devices on the real SDK.

One local cloud on 127.54.1.1 hosts our Functions app (tutorial policy, registration log in
Azurite); devices provision through DPS and the webhook with `azure-iot-device`. Each test looks
at what a person sees and does what a person does: clicks, types, waits for text.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.iot.device import Message, MethodResponse
from azure.iot.device.exceptions import ClientError, ConnectionFailedError
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import Twin, TwinProperties
from playwright.sync_api import Browser, expect

from sas import derive_device_key
from tests.azurite import Azurite, fresh_prefix
from tests.emulator.console.browser import Watched, launched, watched
from tests.emulator.e2e.harness import (
    RunningEmulator,
    device_client,
    emulator_toml,
    options,
    register,
    wait_for,
)

pytestmark = pytest.mark.e2e

BIND = "127.54.1.1"
FUNCTION_KEY = "console-function-key"
GROUP_KEY = (
    "oiK77Oy7rBw8YB6IS6ukRChAw+Yq6GC61RMrPLSTiOOtdI+XDu0LmLuNm11p+qv2I+adqGUdZHm46zXAQdZoOA=="
)
SECONDARY = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
TOASTERS = "contoso-toasters-hub.azure-devices.net"
HEATPUMPS = "contoso-heatpumps-hub.azure-devices.net"
TOASTER = "breakroom499-contoso-tstrsd-007"
HEATPUMP = "mainbuilding167-contoso-hpsd-088"
CONFIG = emulator_toml(
    hubs=[TOASTERS, HEATPUMPS],
    groups=[
        {
            "id": "contoso-custom",
            "primary_key": GROUP_KEY,
            "secondary_key": SECONDARY,
            "allocation": "custom",
            "webhook_url": f"http://{BIND}:7071/api/allocate?code={FUNCTION_KEY}",
            "hubs": [TOASTERS, HEATPUMPS],
        }
    ],
)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory, azurite: Azurite) -> Iterator[RunningEmulator]:
    """The local cloud with its console, hosting function_app as `make up` does: from settings
    (the tutorial policy, the registration log in the session's Azurite under its own prefix)."""
    run_options = options(
        tmp_path_factory.mktemp("console"),
        BIND,
        CONFIG,
        host_functions=True,
        function_key=FUNCTION_KEY,
        functions_bind=BIND,
        service_port=0,
        app_settings={
            "ALLOCATION_POLICY_FILE": "examples/tutorial-policy.toml",
            "AzureWebJobsStorage": azurite.connection_string,
            "REGISTRY_TABLE_PREFIX": fresh_prefix(),
        },
    )
    with RunningEmulator(run_options) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium (the test fails, saying how to install one, when none is found)."""
    with launched() as chromium:
        yield chromium


@pytest.fixture
def page(browser: Browser) -> Iterator[Watched]:
    """A fresh page; the test fails if the page reported a JavaScript error."""
    view = watched(browser)
    yield view
    view.page.context.close()
    assert view.errors == [], "the page reported JavaScript errors"


def console_url(cloud: RunningEmulator) -> str:
    """The URL the local cloud wrote into admin.json (with the login token)."""
    info = json.loads((cloud.emulator.options.state_dir / "admin.json").read_text())
    url: str = info["console_url"]
    return url


def base(cloud: RunningEmulator) -> str:
    return console_url(cloud).split("?", 1)[0]


def login(view: Watched, cloud: RunningEmulator, fragment: str = "") -> None:
    """Open the console's URL (the token becomes a cookie), then the view in `fragment`."""
    view.page.goto(console_url(cloud))
    if fragment:
        view.page.goto(base(cloud) + fragment)


def provision(cloud: RunningEmulator, registration_id: str) -> tuple[str, str]:
    """Register through DPS and our webhook with the real SDK; (hub, device key)."""
    key = derive_device_key(GROUP_KEY, registration_id)
    result = register(cloud, registration_id, key)
    assert result.status == "assigned"
    return result.registration_state.assigned_hub, key


@pytest.fixture(scope="module")
def toaster(cloud: RunningEmulator) -> Iterator[Any]:
    """The tutorial's toaster, provisioned and connected, answering `reboot` and keeping what it
    receives (C2D messages, desired patches)."""
    hub, key = provision(cloud, TOASTER)
    client = device_client(cloud, hub, TOASTER, key)
    client.received_messages = []
    client.received_patches = []

    def on_method(request: Any) -> None:
        client.send_method_response(
            MethodResponse.create_from_method_request(request, 200, {"rebooted": request.payload})
        )

    client.on_message_received = client.received_messages.append
    client.on_twin_desired_properties_patch_received = client.received_patches.append
    client.on_method_request_received = on_method
    client.connect()
    yield client
    client.shutdown()


def test_without_the_token_every_page_and_call_is_401(cloud: RunningEmulator) -> None:
    """No token, a wrong token: the page, an asset, the API and the stream all answer 401."""
    root = base(cloud)
    with httpx.Client() as client:
        for path in ("/", "/static/console.js", "/api/admin/status", "/api/stream", "/?token=x"):
            assert client.get(root + path.lstrip("/")).status_code == 401, path
        assert client.post(root + "api/policy/decide", json={}).status_code == 401
        assert client.get(console_url(cloud), follow_redirects=True).status_code == 200


def test_a_browser_without_the_token_sees_401(browser: Browser, cloud: RunningEmulator) -> None:
    """The browser gets the 401 page, which says how to get the URL."""
    view = watched(browser)
    answer = view.page.goto(base(cloud))
    assert answer is not None
    assert answer.status == 401
    expect(view.page.locator("h1")).to_contain_text("401")
    expect(view.page.locator("pre")).to_have_text(".venv/bin/python -m emulator console --open")
    view.page.context.close()


def test_landing_page_shows_registrations_and_hubs(
    page: Watched, cloud: RunningEmulator, toaster: Any
) -> None:
    """Registrations appear (one of them while the page is open), with their hubs and the
    webhook's answer; each hub has its card."""
    login(page, cloud)
    rows = page.page.locator("tbody tr")
    expect(rows.filter(has_text=TOASTER)).to_contain_text("assigned")
    expect(rows.filter(has_text=TOASTER)).to_contain_text(TOASTERS)
    expect(rows.filter(has_text=TOASTER)).to_contain_text("HTTP 200")
    provision(cloud, HEATPUMP)  # while the page is open: it arrives without a reload
    expect(rows.filter(has_text=HEATPUMP)).to_contain_text(HEATPUMPS)
    expect(rows.filter(has_text=HEATPUMP)).to_contain_text("assigned")
    for hub in (TOASTERS, HEATPUMPS):
        expect(page.page.locator(".hub-card", has_text=hub)).to_be_visible()
    rows.filter(has_text=HEATPUMP).locator("td").first.click()  # the exchange and the rule
    detail = page.page.locator("tr.detail")
    expect(detail).to_contain_text("request sent (keys masked)")
    expect(detail.locator("td.rule")).to_contain_text("heat pumps")


def test_device_page_shows_twin_and_telemetry_without_reload(
    page: Watched, cloud: RunningEmulator, toaster: Any
) -> None:
    """The device page has its twin (the policy's initial desired properties) and shows new
    telemetry as it arrives, the page never reloaded."""
    login(page, cloud, f"#/device/{TOASTERS}/{TOASTER}")
    expect(page.page.locator("#desired")).to_contain_text('"darknessSetting": "medium"')
    expect(page.page.locator("#connection")).to_have_text("connected")
    page.page.evaluate("window.notReloaded = true")
    expect(page.page.locator("#live")).to_have_text("live")
    toaster.send_message(Message(json.dumps({"temperature": 231.5})))
    row = page.page.locator("#telemetry-rows tr.message").first
    expect(row).to_contain_text('"temperature": 231.5')
    message = Message("crumbs")
    message.custom_properties["level"] = "high"
    toaster.send_message(message)
    expect(page.page.locator("#telemetry-rows tr.message").first).to_contain_text("crumbs")
    assert page.page.evaluate("window.notReloaded") is True


def test_desired_property_edit_reaches_the_device(
    page: Watched, cloud: RunningEmulator, toaster: Any
) -> None:
    """A desired property typed into the page reaches the connected device as a patch."""
    login(page, cloud, f"#/device/{TOASTERS}/{TOASTER}")
    expect(page.page.locator("#etag")).not_to_be_empty()
    page.page.fill("#desired-patch", '{"darknessSetting": "dark"}')
    page.page.click("#twin-apply")
    wait_for(lambda: any(p.get("darknessSetting") == "dark" for p in toaster.received_patches))
    expect(page.page.locator("#desired")).to_contain_text('"darknessSetting": "dark"')


def test_twin_edit_is_refused_when_the_twin_moved_on(
    page: Watched, cloud: RunningEmulator, toaster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The edit is sent with the etag shown: a change made meanwhile (by the service SDK) makes it
    fail with a message, and the device never gets the stale edit."""
    login(page, cloud, f"#/device/{TOASTERS}/{TOASTER}")
    expect(page.page.locator("#etag")).not_to_be_empty()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cloud.emulator.ca_path))
    strings = json.loads((cloud.emulator.options.state_dir / "hubs.json").read_text())
    registry = IoTHubRegistryManager.from_connection_string(strings[TOASTERS])
    registry.update_twin(
        TOASTER, Twin(properties=TwinProperties(desired={"state": "service-side"})), "*"
    )
    page.page.fill("#desired-patch", '{"state": "stale-edit"}')
    page.page.click("#twin-apply")
    expect(page.page.locator(".banner")).to_contain_text("changed since it was shown")
    twin = cloud.call(lambda: cloud.emulator.hub(TOASTERS).twin(TOASTER))
    assert twin is not None
    assert twin.desired["state"] == "service-side"
    # The browser logs the 412 it was answered (the refusal this test expects), nothing else.
    expected = [error for error in page.errors if "status of 412" in error]
    assert len(expected) == 1
    page.errors.remove(expected[0])


def test_c2d_message_and_method_call_round_trip(
    page: Watched, cloud: RunningEmulator, toaster: Any
) -> None:
    """A C2D message sent from the page reaches the device; a direct method's answer comes back
    into the page; each shows its command."""
    login(page, cloud, f"#/device/{TOASTERS}/{TOASTER}")
    page.page.fill("#c2d-body", "descale today")
    page.page.fill("#c2d-properties", "priority=high")
    page.page.click("#c2d-send")
    expect(page.page.locator("#c2d")).to_contain_text("delivered")
    expect(page.page.locator("#c2d .command")).to_contain_text("send-c2d")
    wait_for(lambda: any(m.data == b"descale today" for m in toaster.received_messages))
    received = next(m for m in toaster.received_messages if m.data == b"descale today")
    assert received.custom_properties == {"priority": "high"}
    page.page.fill("#method-name", "reboot")
    page.page.fill("#method-payload", '{"delay": 2}')
    page.page.click("#method-invoke")
    result = page.page.locator("#method-result")
    expect(result).to_contain_text("status 200")
    expect(result).to_contain_text('"delay": 2')


def test_a_fault_set_from_the_page_is_seen_by_a_device(
    page: Watched, cloud: RunningEmulator
) -> None:
    """Refuse the next connection to a hub from the drills page: the device SDK cannot connect;
    cleared from the page, it can."""
    hub, key = provision(cloud, "annex3-contoso-hpsd-088")
    login(page, cloud, "#/drills")
    page.page.select_option("#fault-target", hub)
    page.page.fill("#fault-refuse_connects", "1")
    expect(page.page.locator("#faults .command").first).to_contain_text(
        f"fault-set {hub} --refuse-connects 1"
    )
    page.page.click("#fault-set")
    expect(page.page.locator("#active-faults")).to_contain_text("refuse connects: 1")
    client = device_client(cloud, hub, "annex3-contoso-hpsd-088", key)
    try:
        with pytest.raises(ConnectionFailedError):
            client.connect()
    finally:
        client.shutdown()
    page.page.fill("#fault-refuse_connects", "5")
    page.page.click("#fault-set")
    page.page.click("#fault-clear")
    expect(page.page.locator("#no-faults")).to_be_visible()
    client = device_client(cloud, hub, "annex3-contoso-hpsd-088", key)
    try:
        client.connect()
    finally:
        client.shutdown()


def test_enrollment_disabled_from_the_page_refuses_devices(
    page: Watched, cloud: RunningEmulator
) -> None:
    """Disable the group from the enrollments page: DPS answers `disabled`; enable it again."""
    login(page, cloud, "#/enrollments")
    row = page.page.locator('tbody tr[data-id="group/contoso-custom"]')
    row.get_by_role("button", name="Disable").click()
    expect(row).to_contain_text("disabled")
    expect(page.page.locator(".command")).to_contain_text("disable contoso-custom")
    key = derive_device_key(GROUP_KEY, "kitchen12-contoso-tstrsd-007")
    with pytest.raises(ClientError) as raised:  # the SDK raises on DPS's `disabled`
        register(cloud, "kitchen12-contoso-tstrsd-007", key)
    assert "disabled" in str(raised.value.__cause__)
    row.get_by_role("button", name="Enable").click()
    expect(row).to_contain_text("enabled")
    assert register(cloud, "kitchen12-contoso-tstrsd-007", key).status == "assigned"


def test_a_view_left_while_loading_leaves_nothing_behind(
    page: Watched, cloud: RunningEmulator, toaster: Any
) -> None:
    """Leaving the landing page before it has loaded: the next view shows only itself (no
    registrations table, no hub cards drawn late into it), and then its own content."""
    login(page, cloud)
    page.page.goto(base(cloud) + "#/enrollments")  # while the landing page is still loading
    expect(page.page.locator("tbody tr", has_text="contoso-custom")).to_be_visible()
    page.page.wait_for_timeout(1500)  # past the landing page's own loads and its debounces
    expect(page.page.locator("main h1")).to_have_count(1)
    expect(page.page.locator("main h1")).to_have_text("Enrollments")
    expect(page.page.locator(".hub-card")).to_have_count(0)
    page.page.goto(base(cloud) + "#/hubs")
    expect(page.page.locator(".panel", has_text=TOASTER)).to_contain_text("connected")


def test_a_view_opened_while_the_console_loads_is_drawn_once(
    page: Watched, cloud: RunningEmulator
) -> None:
    """The address changes to a view while the console's /api/info is still on its way: the view
    is drawn once, after the answer, and what is typed into it stays (drawn twice, the second
    drawing replaced the first and what was typed in it)."""
    page.page.add_init_script(
        "window.__views = 0; new MutationObserver((changes) => { for (const change of changes)"
        " for (const node of change.addedNodes) if (node.classList && node.classList.contains('view'))"
        " window.__views += 1; }).observe(document, { childList: true, subtree: true });"
    )
    held: list[Any] = []

    def hold(route: Any) -> None:  # a Python function: Playwright does not take a builtin
        held.append(route)

    page.page.route("**/api/info", hold)
    login(page, cloud)  # the page is loaded; its /api/info is held
    page.page.goto(base(cloud) + "#/allocation")
    page.page.wait_for_timeout(300)
    assert len(held) == 1
    held[0].continue_()
    page.page.fill("#play-id", "nowhere9-contoso-tstrsd-007")
    page.page.wait_for_timeout(1000)  # past any second drawing
    expect(page.page.locator("#play-id")).to_have_value("nowhere9-contoso-tstrsd-007")
    assert page.page.evaluate("window.__views") == 1


def test_policy_playground_and_hub_moves(page: Watched, cloud: RunningEmulator) -> None:
    """The playground shows the hosted policy's rule and hub without registering the device;
    adding a hub moves only some of the synthetic toasters."""
    login(page, cloud, "#/allocation")
    page.page.fill("#play-id", "nowhere9-contoso-tstrsd-007")
    page.page.click("#play-run")
    expect(page.page.locator("#play-rule")).to_have_text("toasters")
    expect(page.page.locator("#play-hub")).to_have_text(TOASTERS)
    expect(page.page.locator("#play-result .command")).to_contain_text("webhook decide")
    expect(page.page.locator("#play-result")).not_to_contain_text("null")  # no payload: none shown
    registered = cloud.call(lambda: cloud.emulator.dps.record("nowhere9-contoso-tstrsd-007"))  # type: ignore[union-attr]
    assert registered is None
    page.page.fill("#moves-count", "400")
    page.page.click("#moves-run")
    moved = page.page.locator("#moves-moved")
    expect(moved).to_contain_text("of 400")
    count = int(moved.inner_text().split()[0])
    assert 0 < count < 400


def test_registration_log_sits_next_to_dps_records(
    page: Watched, cloud: RunningEmulator, toaster: Any
) -> None:
    """The log page joins Table storage's inventory with DPS's records: same hub for the toaster,
    and its history names the rule."""
    login(page, cloud, "#/log")
    row = page.page.locator("tbody tr", has_text=TOASTER)
    expect(row).to_contain_text("same hub")
    row.locator("td").first.click()
    expect(page.page.locator("tr.detail")).to_contain_text("toasters")


def test_a_stream_that_is_never_read_does_not_slow_devices(
    cloud: RunningEmulator, toaster: Any
) -> None:
    """An event stream whose reader has stopped reading: the device's messages are still all
    acknowledged, and the emulator keeps serving."""
    url = console_url(cloud)
    token = url.split("token=", 1)[1]
    stop = threading.Event()

    def stalled() -> None:
        with (
            httpx.Client(timeout=60) as client,
            client.stream(
                "GET",
                base(cloud) + f"api/stream?hub={TOASTERS}",
                headers={"Authorization": f"Bearer {token}"},
            ) as answer,
        ):
            assert answer.status_code == 200
            stop.wait(30)  # never reads a byte more

    reader = threading.Thread(target=stalled)
    reader.start()
    try:
        for n in range(300):
            toaster.send_message(Message("x" * 2000 + str(n)))
        status = httpx.get(
            base(cloud) + "api/admin/status", headers={"Authorization": f"Bearer {token}"}
        )
        assert status.status_code == 200
    finally:
        stop.set()
        reader.join(10)
