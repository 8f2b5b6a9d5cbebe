"""The pure cores import no Azure SDK and nothing that talks to the network or other processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = (
    "azure",
    "socket",
    "ssl",
    "http",
    "urllib3",
    "requests",
    "asyncio",
    "subprocess",
    "paho",
    "uamqp",
)
PURE = [
    "allocation",
    "sas",
    "store.keys",
    "store.records",
    "store.inventory",
    "store.lifecycle",
    "emulator.endpoints",
    "emulator.mqtt",
    "emulator.config.model",
    "emulator.config.parse",
    "emulator.dps.wire",
    "emulator.dps.auth",
    "emulator.dps.allocation",
    "emulator.dps.reprovision",
    "emulator.dps.enrollments",
    "emulator.dps.edits",
    "emulator.hub.twin",
    "emulator.hub.views",
    "emulator.hub.registry",
    "emulator.hub.device_events",
    "emulator.hub.messages",
    "emulator.hub.endpoint",
    "emulator.hub.directory",
    "emulator.service.api",
    "emulator.service.views",
    "emulator.service.query",
    "emulator.events.eventgrid",
    "emulator.events.policy",
    "emulator.dps.codes",
    "emulator.faults.spec",
    "emulator.quotas.limits",
    "emulator.https.dps_api",
    "emulator.https.hub_api",
    "emulator.persistence.document",
]


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io_packages(module: str) -> None:
    """Importing a decision-making module loads no SDK, network or process module."""
    probe = (
        f"import sys, {module}\n"
        f"print(sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
