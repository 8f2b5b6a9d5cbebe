"""The README's commands, typed as a user types them, in a fresh copy of the repository.

The module copies the tracked files (what a clone holds, nothing beside it) into a temporary
folder, runs `make install` there, and then the documented blocks (`tests/documented/blocks.py`)
in the order a newcomer meets them, as subprocesses: `make up` in the background, a device, a
fleet, the key-rotation drill, the doctor on a working and on a broken setup, a setup that cannot
start, and the `func start` path with a stand-in for Core Tools.

Two things differ from a developer's machine, both through the environment the commands read: the
local cloud listens on a loopback address of its own (`EMULATOR_BIND`), and the app's
`AzureWebJobsStorage` names a free port (the environment wins over `local.settings.json`, as with
`func start`), so the tests run beside a developer's own `make up`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devtools.azurite import ACCOUNT, ACCOUNT_KEY, free_port
from tests.documented.blocks import ROOT, Block, block

pytestmark = pytest.mark.e2e

BIND = "127.47.0.1"
# A foreground command stopped with Ctrl-C: 0 from Python's own handler, or make's death by
# SIGINT (-2 from subprocess, 130 from a shell).
INTERRUPTED = (0, -signal.SIGINT, 128 + signal.SIGINT)
BLOCK_TIMEOUT = 180.0
READY_TIMEOUT = 90.0
DEVICE = "breakroom499-contoso-tstrsd-007"
# Every documented block with an id is run by a test below (test_blocks.py checks the list).
RUN_BLOCKS = (
    "up",
    "device",
    "fleet",
    "c2d",
    "console",
    "doctor",
    "policy-tools",
    "drill-primary",
    "drill-secondary",
    "drill-both",
    "drill-rederive",
    "func-storage",
    "func-start",
    "func-cloud",
)


@dataclass
class Result:
    """A finished block."""

    code: int
    out: str
    err: str


class Clone:
    """A fresh copy of the repository with its own `make install`, and the blocks run in it."""

    def __init__(self, path: Path, env: dict[str, str], logs: Path) -> None:
        self.path = path
        self.env = env
        self.logs = logs  # background output goes to files: a full pipe would stall a server
        self.background: list[subprocess.Popen[str]] = []
        self._output: dict[int, Path] = {}

    def run(self, block_id: str, *, env: dict[str, str] | None = None) -> Result:
        """Run a block to the end; its exit status must be the documented one."""
        documented = block(block_id, self.path)
        assert "background" not in documented.options, f"{block_id} runs in the background"
        finished = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", documented.script],
            cwd=self.path,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
            check=False,
        )
        result = Result(finished.returncode, finished.stdout, finished.stderr)
        expected = int(documented.options.get("exit") or 0)
        assert result.code == expected, f"{documented.where} exited {result.code}:\n{result.err}"
        return result

    def start(self, block_id: str, *, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start a background block and wait until what it documents as ready is there."""
        documented = block(block_id, self.path)
        assert "background" in documented.options, f"{block_id} is not a background block"
        process = self._spawn(["bash", "-e", "-c", documented.script], env)
        ready = documented.options.get("ready")
        if ready:
            self.wait_for((self.path / ready).exists, process, documented)
        return process

    def spawn(self, argv: list[str]) -> subprocess.Popen[str]:
        """A process of the test's own (the stand-in for a tool that cannot be installed)."""
        return self._spawn(argv, None)

    def _spawn(self, argv: list[str], env: dict[str, str] | None) -> subprocess.Popen[str]:
        log = self.logs / f"background-{len(self._output) + 1}.log"
        with log.open("w") as output:
            process = subprocess.Popen(
                argv,
                cwd=self.path,
                env=env or self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        self._output[process.pid] = log
        self.background.append(process)
        return process

    def output(self, process: subprocess.Popen[str]) -> str:
        """What a background process has written so far."""
        return self._output[process.pid].read_text(errors="replace")

    def wait_for(
        self, ready: Callable[[], bool], process: subprocess.Popen[str], what: object
    ) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready():
            if process.poll() is not None:
                output = self.output(process)
                pytest.fail(
                    f"{what} ended with {process.returncode} before it was ready:\n{output}"
                )
            assert time.monotonic() < deadline, f"{what}: not ready in {READY_TIMEOUT} s"
            time.sleep(0.1)

    def stop(self, process: subprocess.Popen[str]) -> tuple[int, str]:
        """Ctrl-C, as a user stops a foreground command; its exit status and output."""
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        output = self.output(process)
        if process in self.background:
            self.background.remove(process)
        return process.returncode, output

    def close(self) -> None:
        for process in list(self.background):
            self.stop(process)


def tracked_files() -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    return [name.decode() for name in listing if name]


def user_environment(storage_port: int) -> dict[str, str]:
    """The environment of a user's shell, plus the two settings that keep the tests apart."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TERM", "npm_config_cache")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    python = shutil.which("python3.11") or sys.executable
    env["PATH"] = os.pathsep.join([str(Path(python).parent), env.get("PATH", "/usr/bin:/bin")])
    env["EMULATOR_BIND"] = BIND
    env["AzureWebJobsStorage"] = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"TableEndpoint=http://127.0.0.1:{storage_port}/{ACCOUNT};"
    )
    return env


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clone]:
    """The repository as a clone has it, installed with `make install`, nothing beside it."""
    path = tmp_path_factory.mktemp("fresh") / "repo"
    for name in tracked_files():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    env = user_environment(free_port())
    installed = subprocess.run(
        ["make", "install"],
        cwd=path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    fresh = Clone(path, env, path.parent)
    try:
        yield fresh
    finally:
        fresh.close()


@pytest.fixture(scope="module")
def cloud(clone: Clone) -> Iterator[subprocess.Popen[str]]:
    """`make up`, running for the scenarios that need it."""
    process = clone.start("up")
    yield process
    clone.stop(process)


def secrets_of(clone: Clone) -> list[str]:
    """Every key the local cloud and the device hold (none may appear in any output)."""
    found: list[str] = []
    config = tomllib.loads((clone.path / "emulator.local.toml").read_text())
    for group in config.get("enrollment_groups", []):
        found += [group["primary_key"], group["secondary_key"]]
    for name in ("secrets.json",):
        if (clone.path / name).exists():
            document = json.loads((clone.path / name).read_text())
            found += [document["primaryKey"], document["secondaryKey"]]
    hubs = json.loads((clone.path / ".emulator" / "hubs.json").read_text())
    found += [text.rsplit("SharedAccessKey=", 1)[1] for text in hubs.values()]
    return found


def assert_private(*paths: Path) -> None:
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_quick_start_make_up_a_device_and_a_fleet(
    clone: Clone, cloud: subprocess.Popen[str]
) -> None:
    """`make up`, then the device and the fleet blocks: all provisioned through the webhook."""
    device = clone.run("device")
    assert f"wrote secrets.json for registration id '{DEVICE}'" in device.out
    assert "dps: registered with the primary key" in device.out
    assert "hub contoso-toasters-hub.azure-devices.net" in device.out
    assert 'twin: desired (version 1) {"darknessSetting": "medium", "state": "ready"}' in device.out
    assert "telemetry: sent 3/3" in device.out
    fleet = clone.run("fleet")
    assert "fleet: 20/20 device(s) provisioned" in fleet.out
    assert "failures: none" in fleet.out
    assert len(re.findall(r"^fleet\d+-contoso-\S+ +assigned -> ", fleet.out, re.MULTILINE)) == 20
    listed = subprocess.run(
        [".venv/bin/python", "-m", "emulator", "registrations", "--json"],
        cwd=clone.path,
        env=clone.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    registrations = json.loads(listed.stdout)["registrations"]
    assert {entry["status"] for entry in registrations} == {"assigned"}
    assert len(registrations) == 21
    assert_private(
        clone.path / "secrets.json",
        clone.path / "settings.json",
        clone.path / "emulator.local.toml",
        clone.path / "local.settings.json",
        clone.path / ".emulator" / "hubs.json",
    )
    keys = secrets_of(clone)
    assert [key for key in keys if key in device.out + device.err + fleet.out + fleet.err] == []


def test_a_message_queued_while_offline_reaches_the_device(
    clone: Clone, cloud: subprocess.Popen[str]
) -> None:
    """send-c2d to the offline device, then `run`: the device prints the message."""
    result = clone.run("c2d")
    assert "queued until the device connects" in result.out
    assert "c2d: descale today" in result.out


def test_the_tools_work_from_any_directory(
    clone: Clone, cloud: subprocess.Popen[str], tmp_path: Path
) -> None:
    """From a folder outside the checkout, the installed tools find the running local cloud."""
    python = str(clone.path / ".venv" / "bin" / "python")
    status = subprocess.run(
        [python, "-m", "emulator", "status"],
        cwd=tmp_path,
        env=clone.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    assert "contoso-toasters-hub.azure-devices.net" in status.stdout
    derived = subprocess.run(
        [python, "-m", "simulator", "derive-key", "--local", "elsewhere-contoso-tstrsd-007"],
        cwd=tmp_path,
        env=clone.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert derived.returncode == 0, derived.stderr
    assert (tmp_path / "secrets.json").exists()


def test_the_console_url_is_printed_and_needs_its_token(
    clone: Clone, cloud: subprocess.Popen[str]
) -> None:
    """`make up`'s summary and `python -m emulator console` give the console's URL; the page
    answers with the token, 401 without."""
    result = clone.run("console")
    url = result.out.strip()
    assert url.startswith(f"http://{BIND}:"), result.out
    assert "/?token=" in url
    assert f"console   {url}" in clone.output(cloud)
    info = json.loads((clone.path / ".emulator" / "admin.json").read_text())
    assert info["console_url"] == url
    assert_private(
        clone.path / ".emulator" / "admin.json", clone.path / ".emulator" / "console-token"
    )
    with httpx.Client(follow_redirects=True) as browser:
        page = browser.get(url)
        assert page.status_code == 200
        assert "Local cloud" in page.text
        assert browser.get(url.split("?", 1)[0] + "api/admin/status").status_code == 200
    assert httpx.get(url.split("?", 1)[0]).status_code == 401


def test_policy_tools(clone: Clone) -> None:
    """`webhook check` and `webhook decide` on the tutorial policy."""
    result = clone.run("policy-tools")
    assert "contoso-toasters-hub.azure-devices.net" in result.out


def test_key_rotation_drill(clone: Clone, cloud: subprocess.Popen[str]) -> None:
    """The four steps of the drill, through the custom-allocation group and our webhook."""
    primary = clone.run("drill-primary")
    assert "regenerated the primary key of group enrollment 'contoso-custom'" in primary.out
    assert "without provisioning" in primary.out
    assert "with the primary connection string" in primary.out
    secondary = clone.run("drill-secondary")
    assert "dps: the primary key was refused" in secondary.out
    assert "dps: registered with the secondary key" in secondary.out
    assert "hub: the primary connection string was refused" in secondary.out
    assert "with the secondary connection string" in secondary.out
    both = clone.run("drill-both")
    assert "dps: the secondary key was refused" in both.out
    assert "must be re-derived" in both.err
    rederived = clone.run("drill-rederive")
    assert "dps: registered with the primary key" in rederived.out
    assert "with the primary connection string" in rederived.out
    keys = secrets_of(clone)
    outputs = [r.out + r.err for r in (primary, secondary, both, rederived)]
    assert [key for key in keys if any(key in text for text in outputs)] == []


def _azurite_pids(port: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"azurite-table" in part for part in command) and str(port).encode() in command:
            pids.append(int(entry.name))
    return pids


def storage_port(clone: Clone) -> int:
    return int(clone.env["AzureWebJobsStorage"].rsplit(":", 1)[1].split("/")[0])


def test_doctor_on_a_working_then_a_broken_setup(
    clone: Clone, cloud: subprocess.Popen[str]
) -> None:
    """The doctor passes while all is up; with Table storage gone it fails, naming the setting."""
    working = clone.run("doctor")
    assert "0 failed" in working.out
    assert "ok    app-health" in working.out
    pids = _azurite_pids(storage_port(clone))
    assert pids, "make up started no Azurite"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    doctor = block("doctor", clone.path)
    broken = subprocess.run(
        ["bash", "-e", "-c", doctor.script],
        cwd=clone.path,
        env=clone.env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
        check=False,
    )
    assert broken.returncode == 1
    assert "FAIL  app-health" in broken.stdout
    assert "AzureWebJobsStorage" in broken.stdout
    code, output = clone.stop(cloud)
    assert code in INTERRUPTED, output
    assert "local cloud up (Ctrl-C stops it)" in output
    # The log is the emulator's, not the Azure SDKs' HTTP traffic, and prints no key.
    assert "Request URL" not in output
    assert "SharedAccessKey=" not in output
    assert [key for key in secrets_of(clone) if key in output] == []
    assert not (clone.path / ".emulator" / "admin.json").exists()
    assert _azurite_pids(storage_port(clone)) == []
    assert "Traceback" not in output


def test_make_up_refuses_to_start_without_storage(clone: Clone) -> None:
    """Storage that does not answer: `make up` exits 2 at once, naming AzureWebJobsStorage."""
    env = dict(clone.env)
    dead_port = free_port()
    env["AzureWebJobsStorage"] = (
        f"DefaultEndpointsProtocol=http;AccountName=someaccount;AccountKey={ACCOUNT_KEY};"
        f"TableEndpoint=http://127.0.0.1:{dead_port}/someaccount;"
    )
    started = time.monotonic()
    result = subprocess.run(
        ["make", "up"],
        cwd=clone.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "AzureWebJobsStorage: Table storage does not answer" in result.stderr
    assert time.monotonic() - started < 60
    assert "Traceback" not in result.stderr
    assert not (clone.path / ".emulator" / "admin.json").exists()


def test_make_up_names_the_functions_port_in_use(clone: Clone) -> None:
    """Port 7071 taken: one line naming --functions-port, exit status 2, no traceback."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past earlier TIME_WAITs
        taken.bind((BIND, 7071))
        taken.listen()
        up = block("up", clone.path)
        result = subprocess.run(
            ["bash", "-e", "-c", up.script],
            cwd=clone.path,
            env=clone.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode != 0
    assert f"--functions-port: cannot listen on {BIND}:7071" in result.stderr
    assert "Traceback" not in result.stderr


def test_func_start_path_with_a_stand_in(clone: Clone) -> None:
    """Azurite as the settings say, a stand-in for `func start` at the documented webhook URL, the
    local cloud without its own app host: a fleet provisions through the stand-in."""
    storage = clone.start("func-storage")
    clone.wait_for(lambda: _listening(storage_port(clone)), storage, "func-storage")
    config = tomllib.loads((clone.path / "emulator.local.toml").read_text())
    webhook = config["enrollment_groups"][0]["webhook_url"]
    assert block("func-start", clone.path).options.keys() >= {"stand-in"}
    stand_in = clone.spawn([".venv/bin/python", "tests/documented/func_start.py", webhook])
    clone.wait_for(lambda: _listening(7071, BIND), stand_in, "the func start stand-in")
    cloud = clone.start("func-cloud")
    fleet = clone.run("fleet")
    assert "fleet: 20/20 device(s) provisioned" in fleet.out
    _, output = clone.stop(stand_in)
    assert len(re.findall(r"POST /allocate -> 200", output)) == 20, output[-2000:]
    assert clone.stop(cloud)[0] in INTERRUPTED
    assert clone.stop(storage)[0] in INTERRUPTED


def _listening(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


__all__ = ["RUN_BLOCKS", "Block"]
