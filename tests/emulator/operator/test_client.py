"""How tools find a running local cloud (state directory, admin.json) and word its registrations."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from emulator.dps.service import Attempt
from emulator.dps.wire import RegistrationStatus
from emulator.operator import client as admin_client
from emulator.operator.client import (
    ADMIN_FILE,
    DEFAULT_STATE_DIR,
    STATE_DIR_VARIABLE,
    TOKEN_FILE,
    LocalCloud,
    Unreachable,
    find_state_dir,
    registration_line,
    remove_admin_file,
    waiting_reason,
    write_admin_file,
)

NOW = 1_700_000_000.0
TOKEN = "test-admin-token"


# --- find_state_dir -----------------------------------------------------------------------------


def test_an_explicit_directory_wins_over_everything(tmp_path: Path) -> None:
    """--state-dir is used as given, even with $EMULATOR_STATE_DIR and a .emulator around."""
    (tmp_path / ".emulator").mkdir()
    given = tmp_path / "elsewhere"
    env = {STATE_DIR_VARIABLE: str(tmp_path / "from-env")}
    assert find_state_dir(given, env=env, cwd=tmp_path) == given


def test_the_environment_variable_wins_over_a_nearby_directory(tmp_path: Path) -> None:
    """$EMULATOR_STATE_DIR is used before looking for .emulator; an empty value is ignored."""
    (tmp_path / ".emulator").mkdir()
    assert find_state_dir(env={STATE_DIR_VARIABLE: "/srv/cloud"}, cwd=tmp_path) == Path(
        "/srv/cloud"
    )
    (tmp_path / "sub").mkdir()
    found = find_state_dir(env={STATE_DIR_VARIABLE: ""}, cwd=tmp_path / "sub")
    assert found == tmp_path.resolve() / ".emulator"


def test_without_env_mapping_the_process_environment_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """env=None reads os.environ (what LocalCloud.find relies on)."""
    monkeypatch.setenv(STATE_DIR_VARIABLE, str(tmp_path / "cloud"))
    assert find_state_dir(cwd=tmp_path) == tmp_path / "cloud"


def test_the_nearest_emulator_directory_above_the_cwd_is_used(tmp_path: Path) -> None:
    """Walking up from the working directory, the first .emulator found wins."""
    (tmp_path / ".emulator").mkdir()
    (tmp_path / "project" / ".emulator").mkdir(parents=True)
    deep = tmp_path / "project" / "docs" / "notes"
    deep.mkdir(parents=True)
    assert find_state_dir(env={}, cwd=deep) == tmp_path.resolve() / "project" / ".emulator"


def test_an_emulator_directory_in_the_cwd_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """.emulator in the working directory itself is the one used."""
    (tmp_path / ".emulator").mkdir()
    monkeypatch.chdir(tmp_path)
    assert find_state_dir(env={}).resolve() == tmp_path.resolve() / ".emulator"


def test_an_emulator_directory_in_a_given_cwd_is_named_from_there(tmp_path: Path) -> None:
    """With cwd given, a .emulator found there is named so that it resolves to that directory."""
    (tmp_path / ".emulator").mkdir()
    found = find_state_dir(env={}, cwd=tmp_path)
    assert (Path.cwd() / found).resolve() == tmp_path.resolve() / ".emulator"


@pytest.mark.parametrize("checkout_has_one", [True, False])
def test_fallback_is_the_checkouts_directory_then_the_relative_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkout_has_one: bool
) -> None:
    """No .emulator above the cwd: the checkout's .emulator if it exists, else ./.emulator."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    if checkout_has_one:
        (checkout / ".emulator").mkdir()
    monkeypatch.setattr(admin_client, "CHECKOUT", checkout)
    outside = tmp_path / "outside"
    outside.mkdir()
    expected = checkout / ".emulator" if checkout_has_one else DEFAULT_STATE_DIR
    assert find_state_dir(env={}, cwd=outside) == expected


# --- admin.json and LocalCloud.find ------------------------------------------------------------


def cloud_dir(tmp_path: Path, info: object, token: str | None = TOKEN) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    (state / ADMIN_FILE).write_text(info if isinstance(info, str) else json.dumps(info))
    if token is not None:
        (state / TOKEN_FILE).write_text(token + "\n")
    return state


def test_write_admin_file_is_private_and_find_reads_it_back(tmp_path: Path) -> None:
    """admin.json is written 0600; LocalCloud.find returns what it says, with the token."""
    state = tmp_path / "state"
    state.mkdir()
    (state / TOKEN_FILE).write_text(TOKEN + "\n")
    info = {
        "url": "http://127.0.0.1:41234/",
        "bind": "127.48.0.1",
        "mqtt_port": 18883,
        "ca": str(state / "ca.pem"),
        "config": "/srv/emulator.toml",
        "functions_url": "http://127.48.0.1:7071",
        "pid": 4242,
    }
    path = write_admin_file(state, info)
    assert path == state / ADMIN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cloud = LocalCloud.find(state)
    assert cloud == LocalCloud(
        state_dir=state,
        url="http://127.0.0.1:41234",
        token=TOKEN,
        bind="127.48.0.1",
        mqtt_port=18883,
        ca=state / "ca.pem",
        config=Path("/srv/emulator.toml"),
        functions_url="http://127.48.0.1:7071",
        pid=4242,
    )
    assert TOKEN not in repr(cloud)


def test_find_fills_defaults_for_what_admin_json_leaves_out(tmp_path: Path) -> None:
    """Only a URL: bind 127.0.0.1, port 8883, no CA, config, functions URL or pid."""
    cloud = LocalCloud.find(cloud_dir(tmp_path, {"url": "http://127.0.0.1:5000"}))
    assert (cloud.bind, cloud.mqtt_port, cloud.ca, cloud.config) == ("127.0.0.1", 8883, None, None)
    assert (cloud.functions_url, cloud.pid) == (None, None)


def test_remove_admin_file_makes_the_cloud_unreachable(tmp_path: Path) -> None:
    """After remove_admin_file (twice is fine) the cloud is no longer found."""
    state = cloud_dir(tmp_path, {"url": "http://127.0.0.1:5000"})
    remove_admin_file(state)
    remove_admin_file(state)
    with pytest.raises(Unreachable, match="no running local cloud found"):
        LocalCloud.find(state)


@pytest.mark.parametrize(
    ("info", "token"),
    [
        (None, TOKEN),  # no admin.json
        ('{"url": "http://127.0.0.1:5000"', TOKEN),  # corrupt
        ("[1, 2]", TOKEN),
        ({}, TOKEN),
        ({"url": "https://127.0.0.1:5000"}, TOKEN),
        ({"url": "file:///etc/passwd"}, TOKEN),
        ({"url": 5000}, TOKEN),
        ({"url": "http://127.0.0.1:5000"}, None),  # no token file
        ({"url": "http://127.0.0.1:5000"}, "   "),  # empty token
    ],
)
def test_find_raises_unreachable_naming_the_directory(
    tmp_path: Path, info: object, token: str | None
) -> None:
    """A missing, corrupt or non-http admin.json, or no token: Unreachable naming the directory."""
    state = cloud_dir(tmp_path, info if info is not None else "", token)
    if info is None:
        (state / ADMIN_FILE).unlink()
    with pytest.raises(Unreachable) as caught:
        LocalCloud.find(state)
    assert f"no running local cloud found in {state} ({ADMIN_FILE})" in str(caught.value)
    assert "--state-dir" in str(caught.value)


# --- registration_line and waiting_reason -------------------------------------------------------


def attempt(**fields: Any) -> dict[str, Any]:
    """An attempt as the admin API serves it (Attempt.to_json), for registration id dev-1."""
    values: dict[str, Any] = {
        "registration_id": "dev-1",
        "enrollment": "group 'contoso'",
        "status": RegistrationStatus.ASSIGNING,
        "started": NOW - 12,
        "updated": NOW,
        "webhook_max_calls": 11,
        **fields,
    }
    return Attempt(**values).to_json(NOW)


def test_an_assigned_registration_shows_hub_device_and_substatus() -> None:
    """Assigned: the hub and device id, and the substatus when DPS gave one."""
    entry = {
        "registration_id": "dev-1",
        "status": "assigned",
        "assigned_hub": "toasters.azure-devices.net",
        "device_id": "dev-1",
        "substatus": "initialAssignment",
    }
    assert registration_line(entry) == (
        f"{'dev-1':<40} assigned -> toasters.azure-devices.net as dev-1 (initialAssignment)"
    )
    assert registration_line({**entry, "substatus": None}).endswith("as dev-1")
    with_model = registration_line({**entry, "model_id": "dtmi:com:example:Thermostat;1"})
    assert with_model.endswith("(initialAssignment), model dtmi:com:example:Thermostat;1")


def test_an_assigning_registration_before_any_webhook_answer_is_allocating() -> None:
    """In flight with no webhook call made yet: "allocating"."""
    assert waiting_reason(attempt()) == "allocating"
    assert registration_line(attempt()) == f"{'dev-1':<40} assigning: allocating"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"webhook_calls": 2, "webhook_status": 429, "next_call_at": NOW + 10},
            "the webhook's answer to call 2 of 11 was HTTP 429 (the app could not check the "
            "store: is Table storage up?); DPS calls it again in 10 s",
        ),
        (
            {"webhook_calls": 1, "webhook_status": 503, "next_call_at": NOW + 0.5},
            "the webhook's answer to call 1 of 11 was HTTP 503 (the app's policy failed to "
            "load); DPS calls it again in 0.5 s",
        ),
        (
            {"webhook_calls": 3, "webhook_error": "ConnectionRefusedError", "next_call_at": NOW},
            "the webhook's answer to call 3 of 11 was no answer (ConnectionRefusedError); "
            "DPS calls it again in 0 s",
        ),
        (
            {"webhook_calls": 11, "webhook_status": 500},
            "the webhook's answer to call 11 of 11 was HTTP 500",
        ),
    ],
)
def test_waiting_reason_says_what_the_webhook_answered_and_when_dps_calls_again(
    fields: dict[str, Any], expected: str
) -> None:
    """The last answer (with what 429 and 503 mean), or the lack of one, and the next call."""
    entry = attempt(**fields)
    assert waiting_reason(entry) == expected
    assert registration_line(entry) == f"{'dev-1':<40} assigning: {expected}"


def test_an_unreachable_webhook_without_a_reason_says_unreachable() -> None:
    """No status and no recorded error: "no answer (unreachable)"."""
    entry = {"webhook_calls": 1, "webhook_status": None, "webhook_max_calls": 11}
    assert (
        waiting_reason(entry) == "the webhook's answer to call 1 of 11 was no answer (unreachable)"
    )


def test_a_failed_registration_shows_dps_error_and_the_webhooks_answer() -> None:
    """Failed: DPS's code and message, then what the webhook answered when it said why."""
    failed = attempt(
        status=RegistrationStatus.FAILED,
        webhook_calls=1,
        webhook_status=400,
        webhook_answer='{"error": "denied by rule pnp"}',
        error_code=400207,
        error_message="Custom allocation failed with status code: 400",
    )
    assert registration_line(failed) == (
        f"{'dev-1':<40} FAILED 400207: Custom allocation failed with status code: 400 "
        '(webhook answered 400: {"error": "denied by rule pnp"})'
    )
    unreachable = attempt(
        status=RegistrationStatus.FAILED,
        webhook_calls=11,
        error_code=400207,
        error_message="Custom allocation failed: webhook unavailable.",
    )
    assert registration_line(unreachable) == (
        f"{'dev-1':<40} FAILED 400207: Custom allocation failed: webhook unavailable."
    )


def test_a_disabled_registration_says_so() -> None:
    """Disabled: upper case, with what is disabled."""
    assert registration_line(attempt(status=RegistrationStatus.DISABLED)) == (
        f"{'dev-1':<40} DISABLED (the enrollment or device is disabled)"
    )
