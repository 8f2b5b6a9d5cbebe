"""`python -m simulator doctor`: the wiring checks on good and broken enrollments, the emulator
config, the probe against a real local HTTP server, and the CLI (exit codes, no key printed)."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from allocation import load_policy
from simulator.__main__ import main
from simulator.doctor import probe_url
from simulator.wiring import (
    DoctorInputError,
    Enrollment,
    Finding,
    Status,
    enrollment_from_emulator,
    enrollment_from_json,
    exit_code,
    run_checks,
)

ROOT = Path(__file__).resolve().parents[2]
POLICY = load_policy(
    (ROOT / "examples" / "tutorial-policy.toml").read_text(), source="tutorial-policy.toml"
)
KEY = "Zm9vYmFyLXNlY3JldC1mdW5jdGlvbi1rZXk="  # stands in for a function key: must never be printed
TOASTERS = "contoso-toasters-hub-1098.azure-devices.net"
HEATPUMPS = "contoso-heatpumps-hub-1098.azure-devices.net"
GOOD_URL = f"https://contoso-fn.azurewebsites.net/api/allocate?code={KEY}"

# The shape `az iot dps enrollment-group show` prints (DPS REST 2021-10-01 EnrollmentGroup, camelCase;
# keys stripped from attestation by the CLI unless --show-keys).
GOOD: dict[str, Any] = {
    "enrollmentGroupId": "contoso-custom",
    "attestation": {"type": "symmetricKey", "symmetricKey": {}},
    "capabilities": {"iotEdge": False},
    "etag": '"13003fea-0000-0300-0000-62d1d5e50000"',
    "provisioningStatus": "enabled",
    "reprovisionPolicy": {"updateHubAssignment": True, "migrateDeviceData": True},
    "createdDateTimeUtc": "2022-07-15T21:48:53.4522656Z",
    "lastUpdatedDateTimeUtc": "2022-07-15T21:48:53.4522656Z",
    "allocationPolicy": "custom",
    "iotHubs": [TOASTERS, HEATPUMPS],
    "customAllocationDefinition": {"webhookUrl": GOOD_URL, "apiVersion": "2021-10-01"},
}


def _broken(path: str, value: Any) -> dict[str, Any]:
    """GOOD with one field (dotted path) replaced, or removed when value is ...."""
    document = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    target = document
    for name in parents:
        target = target[name]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return document


def _check(findings: tuple[Finding, ...], name: str) -> list[Finding]:
    return [finding for finding in findings if finding.check == name]


def _enrollment(document: dict[str, Any]) -> Enrollment:
    return enrollment_from_json(document, source="enrollment.json")


def test_good_enrollment_passes_every_check() -> None:
    """A correctly wired enrollment gives only ok findings, exit code 0."""
    findings = run_checks(_enrollment(GOOD), policy=POLICY, function_url=GOOD_URL)
    assert {f.check for f in findings} >= {
        "allocation-policy",
        "webhook-url",
        "https",
        "function-key",
        "route",
        "api-version",
        "hubs",
        "provisioning-status",
        "function-url",
    }
    assert [f for f in findings if f.status is not Status.OK] == []
    assert exit_code(findings) == 0


@pytest.mark.parametrize(
    ("path", "value", "check", "explains"),
    [
        ("allocationPolicy", "hashed", "allocation-policy", "never called"),
        ("allocationPolicy", ..., "allocation-policy", "never called"),
        ("customAllocationDefinition.webhookUrl", ..., "webhook-url", "400004"),
        (
            "customAllocationDefinition.webhookUrl",
            "https://contoso-fn.azurewebsites.net/api/allocate",
            "function-key",
            "400209",
        ),
        (
            "customAllocationDefinition.webhookUrl",
            f"http://contoso-fn.azurewebsites.net/api/allocate?code={KEY}",
            "https",
            "plain http",
        ),
        (
            "customAllocationDefinition.webhookUrl",
            f"https://contoso-fn.azurewebsites.net/api/HttpTrigger1?code={KEY}",
            "route",
            "400207",
        ),
        ("customAllocationDefinition.apiVersion", ..., "api-version", "requires"),
        ("customAllocationDefinition.apiVersion", "2017-11-15", "api-version", "2018-09-01"),
        ("customAllocationDefinition.apiVersion", "latest", "api-version", "2018-09-01"),
        ("iotHubs", [TOASTERS], "hubs", "400207"),
        ("provisioningStatus", "disabled", "provisioning-status", "disabled"),
    ],
    ids=[
        "hashed",
        "no-policy",
        "no-webhook",
        "no-key",
        "plain-http",
        "wrong-route",
        "no-api-version",
        "old-api-version",
        "bad-api-version",
        "missing-hub",
        "disabled",
    ],
)
def test_broken_enrollment_fails_the_right_check(
    path: str, value: Any, check: str, explains: str
) -> None:
    """Each wiring mistake fails its own check with a why naming the DPS consequence and a fix."""
    findings = run_checks(_enrollment(_broken(path, value)), policy=POLICY)
    failed = [f for f in findings if f.status is Status.FAIL]
    assert [f.check for f in failed] == [check]
    assert explains in failed[0].why
    assert failed[0].fix
    assert exit_code(findings) == 1


def test_masked_webhook_key_is_a_warning_not_a_failure() -> None:
    """A URL whose query DPS masked as ?**** cannot be checked offline: warn and suggest --probe."""
    document = _broken(
        "customAllocationDefinition.webhookUrl",
        "https://contoso-fn.azurewebsites.net/api/allocate?****",
    )
    findings = run_checks(_enrollment(document), policy=POLICY)
    (key,) = _check(findings, "function-key")
    assert key.status is Status.WARN
    assert "--probe" in key.fix
    assert exit_code(findings) == 0


def test_hub_no_rule_uses_is_a_warning() -> None:
    """A linked hub the policy never chooses is reported, without failing the run."""
    extra = "contoso-spare-hub.azure-devices.net"
    findings = run_checks(
        _enrollment(_broken("iotHubs", [TOASTERS, HEATPUMPS, extra])), policy=POLICY
    )
    (hubs,) = _check(findings, "hubs")
    assert hubs.status is Status.WARN
    assert extra in hubs.what
    assert exit_code(findings) == 0


def test_rule_for_another_enrollment_group_is_not_held_against_this_one() -> None:
    """A rule restricted to another group needs none of this enrollment's hubs."""
    policy = load_policy(
        """
        [[rules]]
        name = "other group"
        hubs = ["*-elsewhere-*"]
        match = { enrollment_group = "someone-else" }

        [[rules]]
        name = "ours"
        hubs = ["*-toasters-*", "*-heatpumps-*"]
        """,
        source="p.toml",
    )
    findings = run_checks(_enrollment(GOOD), policy=policy)
    assert [f.status for f in _check(findings, "hubs")] == [Status.OK]


def test_no_hubs_listed_is_a_warning() -> None:
    """Without iotHubs DPS sends every DPS-linked hub, which the file cannot show: warn."""
    findings = run_checks(_enrollment(_broken("iotHubs", ...)), policy=POLICY)
    assert [f.status for f in _check(findings, "hubs")] == [Status.WARN]


def test_function_url_that_differs_from_the_webhook_fails() -> None:
    """The enrollment must call the function the user deployed."""
    other = f"https://other-fn.azurewebsites.net/api/allocate?code={KEY}"
    findings = run_checks(_enrollment(GOOD), function_url=other)
    (match,) = _check(findings, "function-url")
    assert match.status is Status.FAIL
    assert KEY not in match.what + match.fix


def test_function_url_alone_is_checked() -> None:
    """Without an enrollment, the URL itself is checked: scheme, key and route."""
    findings = run_checks(None, function_url="http://fn.example.net/api/other")
    assert {f.check: f.status for f in findings} == {
        "https": Status.FAIL,
        "function-key": Status.FAIL,
        "route": Status.FAIL,
    }


def test_snake_case_and_list_output_are_accepted() -> None:
    """SDK as_dict() output (snake_case) and `enrollment-group list` output parse the same way."""
    snake = {
        "enrollment_group_id": "contoso-custom",
        "allocation_policy": "custom",
        "iot_hubs": [TOASTERS],
        "custom_allocation_definition": {"webhook_url": GOOD_URL, "api_version": "2021-10-01"},
    }
    parsed = enrollment_from_json(snake, source="s.json")
    assert (parsed.allocation_policy, parsed.api_version, parsed.hubs) == (
        "custom",
        "2021-10-01",
        (TOASTERS,),
    )
    other = {**GOOD, "enrollmentGroupId": "other"}
    picked = enrollment_from_json([other, GOOD], source="l.json", group="CONTOSO-custom")
    assert picked.enrollment_id == "contoso-custom"


@pytest.mark.parametrize(
    ("document", "names"),
    [
        ("not an object", "JSON object"),
        ({"allocationPolicy": "custom"}, "enrollmentGroupId"),
        ({**GOOD, "iotHubs": "hub"}, "iotHubs"),
        ({**GOOD, "customAllocationDefinition": []}, "customAllocationDefinition"),
        ([GOOD, GOOD], "--group"),
    ],
)
def test_unusable_json_names_the_field(document: Any, names: str) -> None:
    """Input that is not an enrollment is refused with the field named."""
    with pytest.raises(DoctorInputError, match=names):
        enrollment_from_json(document, source="e.json")


# --- the emulator config --------------------------------------------------------------------------

EMULATOR_CONFIG = """
[[hubs]]
name = "{toasters}"

[[hubs]]
name = "{heatpumps}"

[[enrollment_groups]]
id = "contoso-custom"
allocation = "custom"
webhook_url = "{url}"

[[enrollment_groups]]
id = "plain"
"""


def _emulator_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "emulator.toml"
    path.write_text(EMULATOR_CONFIG.format(toasters=TOASTERS, heatpumps=HEATPUMPS, url=url))
    return path


def test_emulator_enrollment_with_loopback_http_passes(tmp_path: Path) -> None:
    """The emulator's http://127.0.0.1 webhook with a key is fine; the file is left unchanged."""
    path = _emulator_config(tmp_path, f"http://127.0.0.1:7071/api/allocate?code={KEY}")
    before = path.read_text()
    code = main(
        ["doctor", "--emulator-config", str(path), "--group", "contoso-custom",
         "--policy", str(ROOT / "examples" / "tutorial-policy.toml")],
        {},
    )  # fmt: skip
    assert code == 0
    assert path.read_text() == before  # no generated keys written back


def test_emulator_enrollment_without_key_or_custom_fails(tmp_path: Path) -> None:
    """The emulator checks keys like Azure: no ?code= fails; a hashed group fails the policy check."""
    import tomllib  # noqa: PLC0415

    path = _emulator_config(tmp_path, "http://127.0.0.1:7071/api/allocate")
    data = tomllib.loads(path.read_text())
    keyless = enrollment_from_emulator(data, source="emulator.toml", group="contoso-custom")
    findings = run_checks(keyless)
    assert [f.check for f in findings if f.status is Status.FAIL] == ["function-key"]
    plain = enrollment_from_emulator(data, source="emulator.toml", group="plain")
    assert [f.check for f in run_checks(plain) if f.status is Status.FAIL] == [
        "allocation-policy",
        "webhook-url",
    ]
    with pytest.raises(DoctorInputError, match="no enrollment group 'nope'"):
        enrollment_from_emulator(data, source="emulator.toml", group="nope")


# --- the probe, against a real local HTTP server ----------------------------------------------------


@pytest.fixture
def function_host() -> Iterator[Callable[[str], str]]:
    """A tiny Functions look-alike: /api/allocate with key KEY answers 400 to the probe's body."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received.append(json.loads(self.rfile.read(length)))
            path, _, query = self.path.partition("?")
            if path == "/api/broken":
                status = 503
            elif path != "/api/allocate":
                status = 404
            elif query != f"code={KEY}":
                status = 401
            else:
                status = 400  # the webhook refuses a request without linkedHubs
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output quiet (and free of query strings)."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield lambda path: base + path
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert all(body["linkedHubs"] == [] for body in received)


@pytest.mark.parametrize(
    ("path", "status", "mentions"),
    [
        (f"/api/allocate?code={KEY}", Status.OK, "reachable"),
        ("/api/allocate?code=wrong", Status.FAIL, "400209"),
        ("/api/allocate", Status.FAIL, "400209"),
        (f"/api/HttpTrigger1?code={KEY}", Status.FAIL, "400207"),
        (f"/api/broken?code={KEY}", Status.WARN, "retries"),
    ],
    ids=["good-key", "wrong-key", "no-key", "wrong-route", "unhealthy"],
)
def test_probe_explains_the_function_answer(
    function_host: Callable[[str], str], path: str, status: Status, mentions: str
) -> None:
    """A real POST: 400 means reachable and authorized, 401 -> 400209, 404 -> 400207, 503 retried."""
    finding = probe_url(function_host(path), timeout=5)
    assert finding.status is status
    assert mentions in finding.what + finding.why
    assert KEY not in finding.what


def test_probe_of_a_closed_port_fails() -> None:
    """Nothing listening: the probe fails, naming the reason."""
    import socket  # noqa: PLC0415

    with socket.socket() as sock:  # reserve a free port, then close it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    finding = probe_url(f"http://127.0.0.1:{port}/api/allocate?code={KEY}", timeout=2)
    assert finding.status is Status.FAIL
    assert "failed" in finding.what


# --- the CLI ----------------------------------------------------------------------------------------


def _write(tmp_path: Path, document: Any) -> str:
    path = tmp_path / "enrollment.json"
    path.write_text(json.dumps(document))
    return str(path)


def test_cli_good_enrollment_with_probe_exits_zero_and_never_prints_the_key(
    tmp_path: Path, function_host: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole command: report on stdout, exit 0, the key shown only as ****."""
    url = function_host(f"/api/allocate?code={KEY}")
    document = _broken("customAllocationDefinition.webhookUrl", url)
    code = main(["doctor", "--enrollment", _write(tmp_path, document), "--function-url", url,
                 "--probe", "--policy", str(ROOT / "examples" / "tutorial-policy.toml")], {})  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, out
    assert "code=****" in out
    assert "probe" in out
    assert KEY not in out + err


def test_cli_broken_enrollment_exits_one_with_why_and_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A keyless webhook: exit 1, the report says why (400209) and how to fix it."""
    document = _broken(
        "customAllocationDefinition.webhookUrl", "https://fn.azurewebsites.net/api/allocate"
    )
    code = main(["doctor", "--enrollment", _write(tmp_path, document)], {})
    out, _ = capsys.readouterr()
    assert code == 1
    assert "FAIL  function-key" in out
    assert "400209" in out
    assert "fix: " in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["doctor"], "give --enrollment"),
        (["doctor", "--enrollment", "missing.json"], "cannot be read"),
        (["doctor", "--emulator-config", "x.toml"], "--group"),
        (["doctor", "--function-url", "https://fn.example.net/api/allocate", "--policy", "no.toml"],
         "--policy"),
    ],
)  # fmt: skip
def test_cli_usage_errors_exit_two(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    """Missing or unreadable inputs: one line on stderr naming the flag, exit 2."""
    monkeypatch.chdir(tmp_path)
    assert main(argv, {}) == 2
    assert message in capsys.readouterr().err
