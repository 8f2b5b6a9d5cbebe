"""`make demo` smoke test: `demo.main()` with Azurite, the emulator on 127.77.0.1 and our
Functions app; its output names both hubs, the denial and the registration log."""

from __future__ import annotations

import re

import pytest

from demo.__main__ import DEVICES, main

pytestmark = pytest.mark.e2e


def test_demo_places_the_fleet_and_reads_the_registration_log(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Toasters and heat pumps land on their hubs with their twins; the coffee machine is denied."""
    assert main([]) == 0
    out = capsys.readouterr().out
    assert re.search(r"breakroom499-contoso-tstrsd-007 +-> contoso-toasters-hub", out)
    assert re.search(r"mainbuilding167-contoso-hpsd-088 +-> contoso-heatpumps-hub", out)
    assert '"deviceType": "toaster"' in out
    assert '"temperatureSetting": "65"' in out
    assert re.search(r"lobby1-contoso-coffee-001 +-> denied", out)
    assert f"registration log (Table storage, {len(DEVICES)} record(s))" in out
    assert "reason: Unrecognized device registration" in out
    assert "code=" not in out
    assert "everything stopped" in out
