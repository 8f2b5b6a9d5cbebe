"""The composition root's start checks: a webhook URL aimed at the local Functions host must reach it
with its function key, or the start names the enrollment instead of DPS failing every device."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.app import Emulator, Options
from emulator.config import parse_config

KEY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
FUNCTION_KEY = "right-function-key"
HUB = "toasters.azure-devices.net"


def emulator(
    tmp_path: Path, *webhook_urls: str, bind: str = "127.0.0.1", port: int = 7071
) -> Emulator:
    """An Emulator (not started) whose config has one custom group per URL, then a hashed one."""
    groups = [
        {
            "id": f"group-{number}",
            "primary_key": KEY,
            "secondary_key": KEY,
            "allocation": "custom",
            "webhook_url": url,
        }
        for number, url in enumerate(webhook_urls, start=1)
    ]
    groups.append({"id": "hashed", "primary_key": KEY, "secondary_key": KEY})
    built = Emulator(
        Options(
            config_path=tmp_path / "emulator.toml",
            state_dir=tmp_path / "state",
            functions_bind=bind,
            functions_port=port,
        )
    )
    built._config = parse_config(
        {"hubs": [{"name": HUB}], "enrollment_groups": groups}, source="emulator.toml"
    )
    return built


def local(host: str = "127.0.0.1:7071", code: str | None = FUNCTION_KEY) -> str:
    query = f"?code={code}" if code is not None else ""
    return f"http://{host}/api/allocate{query}"


@pytest.mark.parametrize(
    "url",
    [
        local(),
        local("localhost:7071"),
        local() + "&other=1",
        "https://contoso-alloc.azurewebsites.net/api/allocate?code=another-key",
        local("127.0.0.1:7072", "another-key"),
        local("127.0.0.1:8080", None),
    ],
)
def test_a_url_that_reaches_the_host_with_its_key_or_is_elsewhere_is_fine(
    tmp_path: Path, url: str
) -> None:
    """The host's own key, or a URL that is not the local host (Azure, another port): no problem."""
    assert emulator(tmp_path, url)._webhook_problems(FUNCTION_KEY) == []


@pytest.mark.parametrize("code", ["wrong-function-key", None, ""])
def test_a_local_url_without_the_hosts_function_key_names_the_enrollment(
    tmp_path: Path, code: str | None
) -> None:
    """A wrong, missing or empty ?code= is one problem naming the enrollment, never a key."""
    built = emulator(tmp_path, local(), local(code=code))
    (problem,) = built._webhook_problems(FUNCTION_KEY)
    assert problem.startswith("enrollment group-2: webhook_url: its ?code= is not the local ")
    assert "400209" in problem
    assert str(tmp_path / "state" / "function-key") in problem
    assert FUNCTION_KEY not in problem
    assert "wrong-function-key" not in problem


def test_a_local_url_on_another_loopback_address_names_the_enrollment(tmp_path: Path) -> None:
    """127.0.0.2 on the functions port while the host listens on 127.0.0.1: nothing would answer."""
    built = emulator(tmp_path, local("127.0.0.2:7071"), local("[::1]:7071"))
    problems = built._webhook_problems(FUNCTION_KEY)
    assert [problem.split(": ")[0] for problem in problems] == [
        "enrollment group-1",
        "enrollment group-2",
    ]
    assert (
        "points at 127.0.0.2:7071, but the local Functions host listens on 127.0.0.1:7071"
        in (problems[0])
    )
    assert all(FUNCTION_KEY not in problem for problem in problems)


def test_an_individual_enrollment_is_named_by_its_registration_id(tmp_path: Path) -> None:
    """A custom individual enrollment with a wrong key is named by its registration id."""
    built = emulator(tmp_path)
    assert built.config is not None
    built._config = parse_config(
        {
            "hubs": [{"name": HUB}],
            "individual_enrollments": [
                {
                    "registration_id": "dev-42",
                    "primary_key": KEY,
                    "secondary_key": KEY,
                    "allocation": "custom",
                    "webhook_url": local(code="stale"),
                }
            ],
        },
        source="emulator.toml",
    )
    (problem,) = built._webhook_problems(FUNCTION_KEY)
    assert problem.startswith("enrollment dev-42: webhook_url: ")


def test_a_host_on_a_free_port_or_no_config_checks_nothing(tmp_path: Path) -> None:
    """functions_port 0 (a free port, unknown to any URL) or no config yet: nothing to check."""
    assert emulator(tmp_path, local("127.0.0.1:0", "x"), port=0)._webhook_problems("k") == []
    unstarted = Emulator(Options(config_path=tmp_path / "c.toml", state_dir=tmp_path))
    assert unstarted._webhook_problems("k") == []


def test_a_host_bound_to_localhost_accepts_a_localhost_url(tmp_path: Path) -> None:
    """--bind localhost and a webhook URL on localhost with the key: the same host, no problem."""
    built = emulator(tmp_path, local("localhost:7071"), bind="localhost")
    assert built._webhook_problems(FUNCTION_KEY) == []
