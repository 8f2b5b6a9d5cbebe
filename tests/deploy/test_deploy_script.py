"""scripts/deploy against recording stand-ins for `az` and `func` on PATH: the commands and flags
it runs, that the key travels only inside --webhook-url, and that nothing it prints shows the key.

The stand-ins answer like the real tools for the few queries the script makes; the enrollment
they "show" at the end is rebuilt from the script's own create/update call, so the real
`python -m simulator doctor` checks what the script actually configured. Multi-value flags
(`--iot-hubs`, `--included-event-types`) are read as the real CLI's argparse `nargs="+"` reads
them: one value per word, a quoted "a b" word staying one value.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "deploy"
KEY = "c2NyaXB0LXRlc3QtZnVuY3Rpb24ta2V5LTAwMQ=="  # stands in for the allocate function key
HOST = "contoso-alloc.azurewebsites.net"
HUBS = [
    "contoso-toasters-hub-1098.azure-devices.net",
    "contoso-heatpumps-hub-1098.azure-devices.net",
]

FAKE_AZ = """\
import json, os, sys
args = sys.argv[1:]
log = os.environ["FAKE_LOG"]
with open(log, "a") as handle:
    handle.write(json.dumps(["az", *args]) + "\\n")

def value(flag):
    return args[args.index(flag) + 1] if flag in args else None

joined = " ".join(args)
if joined.startswith("functionapp show") and value("--query") == "defaultHostName":
    print(os.environ["FAKE_HOST"])
elif joined.startswith("functionapp show") and value("--query") == "id":
    print("/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Web/sites/contoso-alloc")
elif joined.startswith("functionapp function keys list"):
    print(os.environ["FAKE_KEY"])
elif joined.startswith("iot dps linked-hub list"):
    print(os.environ["FAKE_HUBS"].replace(" ", "\\n"))
elif joined.startswith("iot hub show"):
    print("/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Devices/IotHubs/" + value("-n"))
elif joined.startswith("iot dps enrollment-group show"):
    calls = [json.loads(line) for line in open(log)]
    wrote = [c for c in calls if c[1:4] in (["iot", "dps", "enrollment-group"],)
             and c[4] in ("create", "update")]
    if value("--output") == "none":
        sys.exit(0 if os.environ.get("FAKE_EXISTS") == "1" else 3)
    last = wrote[-1][1:]
    def flag(name):
        return last[last.index(name) + 1]
    def words(name):  # nargs="+": every following word up to the next --flag, none split
        start = end = last.index(name) + 1
        while end < len(last) and not last[end].startswith("--"):
            end += 1
        return last[start:end]
    print(json.dumps({
        "enrollmentGroupId": flag("--enrollment-id"),
        "attestation": {"type": "symmetricKey", "symmetricKey": {}},
        "provisioningStatus": "enabled",
        "allocationPolicy": flag("--allocation-policy"),
        "iotHubs": words("--iot-hubs"),
        "customAllocationDefinition": {"webhookUrl": flag("--webhook-url"),
                                       "apiVersion": flag("--api-version")},
        "reprovisionPolicy": {"updateHubAssignment": True, "migrateDeviceData": True},
    }, indent=2))
"""

FAKE_FUNC = """\
import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as handle:
    handle.write(json.dumps(["func", *sys.argv[1:]]) + "\\n")
"""


def _tool(directory: Path, name: str, source: str) -> None:
    path = directory / name
    path.write_text(f"#!{sys.executable}\n{source}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _run(
    tmp_path: Path, *args: str, exists: bool = False
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    _tool(bin_dir, "az", FAKE_AZ)
    _tool(bin_dir, "func", FAKE_FUNC)
    log = tmp_path / "calls.jsonl"
    log.touch()
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "PYTHON": sys.executable,
        "FAKE_LOG": str(log),
        "FAKE_HOST": HOST,
        "FAKE_KEY": KEY,
        "FAKE_HUBS": " ".join(HUBS),
        "FAKE_EXISTS": "1" if exists else "0",
        "TMPDIR": str(tmp_path),
    }
    result = subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return result, calls


BASE = (
    "--resource-group",
    "rg",
    "--app",
    "contoso-alloc",
    "--dps",
    "contoso-dps",
    "--group",
    "contoso-custom",
)


def _flag(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


def _words(call: list[str], name: str) -> list[str]:
    """The values of a nargs="+" flag: every word after it up to the next --flag."""
    start = end = call.index(name) + 1
    while end < len(call) and not call[end].startswith("--"):
        end += 1
    return call[start:end]


def _enrollment_writes(calls: list[list[str]]) -> list[list[str]]:
    return [
        c
        for c in calls
        if c[1:4] == ["iot", "dps", "enrollment-group"] and c[4] in ("create", "update")
    ]


def test_deploy_publishes_and_creates_a_custom_enrollment_with_the_key_in_the_url(
    tmp_path: Path,
) -> None:
    """A first deploy: publish, then create the group with custom policy, keyed URL, API version, hubs."""
    result, calls = _run(tmp_path, *BASE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ["func", "azure", "functionapp", "publish", "contoso-alloc", "--python"] in calls
    (write,) = _enrollment_writes(calls)
    assert write[4] == "create"
    assert _flag(write, "--allocation-policy") == "custom"
    assert _flag(write, "--webhook-url") == f"https://{HOST}/api/allocate?code={KEY}"
    assert _flag(write, "--api-version") == "2021-10-01"
    assert _words(write, "--iot-hubs") == HUBS  # one argument per hub, as nargs="+" wants
    assert _flag(write, "--enrollment-id") == "contoso-custom"
    assert _flag(write, "--output") == "none"
    settings = [c for c in calls if c[1:5] == ["functionapp", "config", "appsettings", "set"]]
    assert (
        _flag(settings[0], "--settings") == "ALLOCATION_POLICY_FILE=examples/tutorial-policy.toml"
    )
    assert "doctor: enrollment 'contoso-custom'" in result.stdout
    assert "0 failed" in result.stdout


def test_deploy_never_prints_the_key(tmp_path: Path) -> None:
    """stdout and stderr show the URL as ?code=****; the key appears only inside the az argument."""
    result, calls = _run(tmp_path, *BASE)
    assert result.returncode == 0, result.stderr
    assert KEY not in result.stdout + result.stderr
    assert "code=****" in result.stdout
    holders = [c for c in calls if any(KEY in arg for arg in c)]
    assert holders == _enrollment_writes(calls)
    assert not list(tmp_path.glob("tmp*"))  # the enrollment JSON (with the key) was removed


def test_deploy_updates_an_existing_group_and_subscribes_each_hub(tmp_path: Path) -> None:
    """An existing group is updated, not recreated; each hub's device events go to device_lifecycle."""
    result, calls = _run(tmp_path, *BASE, "--skip-publish", exists=True)
    assert result.returncode == 0, result.stderr
    assert not [c for c in calls if c[0] == "func"]
    (write,) = _enrollment_writes(calls)
    assert write[4] == "update"
    subscriptions = [c for c in calls if c[1:4] == ["eventgrid", "event-subscription", "create"]]
    assert [_flag(c, "--source-resource-id").rsplit("/", 1)[1] for c in subscriptions] == [
        hub.split(".")[0] for hub in HUBS
    ]
    for call in subscriptions:
        # Event Grid subscription names: 3-64 of a-z, A-Z, 0-9 and '-' (no '_').
        assert re.fullmatch(r"[A-Za-z0-9-]{3,64}", _flag(call, "--name")), _flag(call, "--name")
        assert _flag(call, "--endpoint-type") == "azurefunction"
        assert _flag(call, "--endpoint").endswith("/functions/device_lifecycle")
        start = call.index("--included-event-types") + 1
        assert call[start : start + 4] == [
            "Microsoft.Devices.DeviceCreated",
            "Microsoft.Devices.DeviceDeleted",
            "Microsoft.Devices.DeviceConnected",
            "Microsoft.Devices.DeviceDisconnected",
        ]


def test_deploy_hubs_flag_overrides_the_linked_hubs(tmp_path: Path) -> None:
    """--hubs sets the enrollment's hubs without asking DPS; --no-event-grid skips subscriptions."""
    result, calls = _run(
        tmp_path,
        *BASE,
        "--skip-publish",
        "--no-event-grid",
        "--hubs",
        HUBS[0],
        "--api-version",
        "2019-03-31",
    )
    (write,) = _enrollment_writes(calls)
    assert _words(write, "--iot-hubs") == [HUBS[0]]
    assert _flag(write, "--api-version") == "2019-03-31"
    assert not [c for c in calls if c[1:3] == ["iot", "dps"] and c[3] == "linked-hub"]
    assert not [c for c in calls if c[1] == "eventgrid"]
    # The tutorial policy also wants a heat-pump hub: the doctor fails the run and says why.
    assert result.returncode == 1
    assert "FAIL  hubs" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--resource-group is required"),
        (BASE[:6], "--group is required"),
        ((*BASE, "--policy", "missing.toml"), "is not a file"),
        ((*BASE, "--bogus"), "unknown argument"),
    ],
)
def test_deploy_refuses_bad_arguments_before_calling_azure(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    """Missing or unknown arguments: exit 2 with a message naming the argument, and no az call."""
    result, calls = _run(tmp_path, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert calls == []


def test_deploy_is_shellcheck_clean() -> None:
    """shellcheck (from requirements-dev.txt, in the venv) finds nothing in scripts/deploy."""
    shellcheck = Path(sys.executable).parent / "shellcheck"
    assert shellcheck.exists(), "shellcheck is missing: run `make install`"
    result = subprocess.run(
        [str(shellcheck), str(SCRIPT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_deploy_is_executable_and_strict() -> None:
    """The script is executable and runs with set -euo pipefail."""
    assert os.access(SCRIPT, os.X_OK)
    assert "set -euo pipefail" in SCRIPT.read_text()
