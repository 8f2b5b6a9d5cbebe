"""The README's screenshots of the web console, made again: `python -m demo.screenshots`.

1. Azurite (in memory) and the local cloud of `make demo` (DPS, the tutorial's two hubs, our
   Functions app with the tutorial policy) on 127.58.0.1, apart from `make up` and `make demo`.
2. A small fleet through DPS and the webhook with the real `azure-iot-device` SDK (toasters, heat
   pumps, a device the policy denies), each sending telemetry; one toaster stays connected,
   reports properties and keeps sending while its page is open.
3. Headless Chromium (Playwright, the Chromium `devtools.browser` finds) opens the console's URL
   from `admin.json` and saves each main view, 1280x800, as a PNG in `docs/images/` (`--out`):
   provisioning with one webhook exchange open, the device page, allocation (its charts, then a
   playground decision and a hash-move comparison), and the drills.

Exit status 1, saying how to get one, when no Chromium is found. Nothing else is written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from demo.cloud import cloud_options, group_devices
from devtools.azurite import Azurite
from devtools.browser import HOW_TO_INSTALL, find_chromium
from emulator.app import Options
from emulator.in_process import BackgroundEmulator
from simulator.device import Target, quiet_sdk_logs
from simulator.fleet import run_fleet
from simulator.secrets_file import DeviceSecrets

if TYPE_CHECKING:
    from playwright.sync_api import Page, ViewportSize

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"
BIND = "127.58.0.1"
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
FLEET = (
    "breakroom499-contoso-tstrsd-007",
    "kitchen12-contoso-tstrsd-007",
    "lab7-contoso-tstrsd-007",
    "mainbuilding167-contoso-hpsd-088",
    "annex3-contoso-hpsd-088",
    "garage2-contoso-hpsd-088",
    "roof5-contoso-hpsd-088",
    "lobby1-contoso-coffee-001",  # denied by the tutorial policy
)
FOLLOWED = "breakroom499-contoso-tstrsd-007"
FOLLOWED_HUB = "contoso-toasters-hub.azure-devices.net"


def main(argv: Sequence[str] | None = None) -> int:
    """Make the screenshots; 0 when every one was saved."""
    parser = argparse.ArgumentParser(prog="python -m demo.screenshots", description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT, help="directory for the PNGs")
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print(f"screenshots: {HOW_TO_INSTALL}", file=sys.stderr)
        return 1
    quiet_sdk_logs()
    args.out.mkdir(parents=True, exist_ok=True)
    with (
        Azurite() as azurite,
        tempfile.TemporaryDirectory(prefix="console-shots-") as scratch,
        BackgroundEmulator(_options(Path(scratch), azurite.connection_string)) as cloud,
    ):
        saved = _shoot(cloud, chromium, args.out)
    for path in saved:
        print(
            f"screenshots: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
            f"({path.stat().st_size // 1024} KiB)"
        )
    return 0


def _options(scratch: Path, storage: str) -> Options:
    return cloud_options(
        scratch,
        BIND,
        https_port=0,
        service_port=0,
        app_settings={
            "ALLOCATION_POLICY_FILE": "examples/tutorial-policy.toml",
            "AzureWebJobsStorage": storage,
        },
    )


def _fleet(cloud: BackgroundEmulator) -> tuple[Target, dict[str, DeviceSecrets]]:
    target, fleet = group_devices(cloud, FLEET)
    asyncio.run(run_fleet(fleet, target, concurrency=len(fleet), messages=3))
    devices = {device.registration_id: device for device in fleet}
    return target, devices


class Followed:
    """One connected toaster: it reports properties, then sends telemetry until stopped."""

    def __init__(self, target: Target, secrets_: DeviceSecrets) -> None:
        from azure.iot.device import IoTHubDeviceClient  # noqa: PLC0415 -- the SDK, only here

        self.client = IoTHubDeviceClient.create_from_symmetric_key(
            symmetric_key=secrets_.primary_key,
            hostname=FOLLOWED_HUB,
            device_id=secrets_.registration_id,
            **target.sdk_options(),
        )
        self.client.connect()
        self.client.patch_twin_reported_properties(
            {"state": "ready", "darknessSetting": "medium", "firmware": "1.4.2"}
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send, daemon=True)
        self._thread.start()

    def _send(self) -> None:
        from azure.iot.device import Message  # noqa: PLC0415

        n = 0
        while not self._stop.wait(0.7):
            message = Message(  # type: ignore[no-untyped-call]
                json.dumps({"temperature": round(180 + n * 1.7, 1), "slot": n % 2})
            )
            message.content_type = "application/json"
            message.content_encoding = "utf-8"
            message.custom_properties["alert"] = "false" if n % 5 else "crumb-tray"
            self.client.send_message(message)
            n += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.shutdown()


def _provisioning(page: Page, root: str) -> None:
    page.goto(root + "#/")
    row = page.locator("tbody tr", has_text="mainbuilding167-contoso-hpsd-088")
    row.locator("td").first.click()  # its webhook exchange, DPS record and log rows
    page.locator("tr.detail td.rule").first.wait_for()


def _device(page: Page, root: str) -> None:
    page.goto(root + f"#/device/{FOLLOWED_HUB}/{FOLLOWED}")
    page.locator("#telemetry-rows tr.message").nth(4).wait_for()
    page.locator("#reported").wait_for()


def _allocation(page: Page, root: str) -> None:
    page.goto(root + "#/allocation")
    page.locator("#play-id").fill("warehouse9-contoso-hpsd-088")
    page.locator("#play-payload").fill('{"site": "warehouse 9"}')
    page.locator("#play-run").click()
    page.locator("#play-rule").wait_for()
    page.locator("#moves-run").click()
    page.locator("#moves-moved").wait_for()


def _playground(page: Page, root: str) -> None:  # the same page, scrolled to the two answers
    del root
    page.evaluate("window.scrollTo(0, document.getElementById('playground').offsetTop - 70)")


def _drills(page: Page, root: str) -> None:
    page.goto(root + "#/drills")
    page.locator("#fault-throttle_requests").fill("5")
    page.locator("#fault-webhook_latency").fill("2")
    page.locator("#fault-set").click()
    page.locator("#active-faults table").wait_for()


VIEWS: tuple[tuple[str, Callable[[Page, str], None]], ...] = (
    ("provisioning", _provisioning),
    ("device", _device),
    ("allocation", _allocation),
    ("playground", _playground),
    ("drills", _drills),
)


def _shoot(cloud: BackgroundEmulator, chromium: Path, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 -- only here

    target, devices = _fleet(cloud)
    followed = Followed(target, devices[FOLLOWED])
    url = json.loads((cloud.emulator.options.state_dir / "admin.json").read_text())["console_url"]
    root = url.split("?", 1)[0]
    saved: list[Path] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(chromium), headless=True)
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.set_default_timeout(20_000)
            page.goto(url)  # the token becomes a cookie
            for name, prepare in VIEWS:
                prepare(page, root)
                page.wait_for_timeout(600)  # the last live batch drawn, relative times settled
                path = out / f"console-{name}.png"
                page.screenshot(path=str(path))
                saved.append(path)
            browser.close()
    finally:
        followed.close()
    return saved


if __name__ == "__main__":
    sys.exit(main())
