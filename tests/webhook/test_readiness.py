"""The app's readiness check: policy, store settings and storage, each problem naming its setting."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import function_app
from allocation import Policy, default_policy
from store.base import StoreUnavailable
from store.memory import MemoryStore
from store.records import DeviceRecord
from store.runtime import Runtime, build_runtime
from store.settings import StoreSettings, load_settings
from webhook.policy_source import PolicySource
from webhook.readiness import PROBE_REGISTRATION_ID, Problem, check_readiness

ROOT = Path(__file__).resolve().parents[2]
SECRET_CONNECTION = (
    "DefaultEndpointsProtocol=https;AccountName=contoso;AccountKey=bm90LWEta2V5;"
    "EndpointSuffix=core.windows.net"
)


@pytest.fixture(autouse=True)
def fresh_app() -> Iterator[None]:
    """function_app forgets what it built from its settings before and after each test."""
    function_app.reset()
    yield
    function_app.reset()


def healthy(store: MemoryStore | None = None, *, timeout_seconds: float = 2.0) -> Runtime:
    """A runtime over an in-memory store, with a connection string that must never be shown."""
    return Runtime(
        store=store or MemoryStore(),
        hubs=lambda hub: None,
        settings=StoreSettings(
            connection_string=SECRET_CONNECTION, timeout_seconds=timeout_seconds
        ),
    )


def policy_from(tmp_path: Path, name: str) -> PolicySource:
    return PolicySource({"ALLOCATION_POLICY_FILE": name}, root=tmp_path)


def good_policy() -> Policy:
    return default_policy()


def test_a_healthy_app_is_ready() -> None:
    """The default policy and an answering in-memory store: no problem."""
    assert check_readiness(policy=good_policy, runtime=healthy) == []


def test_a_missing_policy_file_names_the_policy_setting(tmp_path: Path) -> None:
    """A policy file that is not there: one problem on ALLOCATION_POLICY_FILE naming the file."""
    problems = check_readiness(policy=policy_from(tmp_path, "nope.toml").get, runtime=healthy)
    (problem,) = problems
    assert problem.setting == "ALLOCATION_POLICY_FILE"
    assert "nope.toml" in problem.message
    assert str(problem).startswith("ALLOCATION_POLICY_FILE: the policy does not load: ")


def test_an_invalid_policy_file_names_the_policy_setting(tmp_path: Path) -> None:
    """A policy file that is not TOML: the problem is on ALLOCATION_POLICY_FILE."""
    (tmp_path / "broken.toml").write_text("[[rules]\n")
    problems = check_readiness(policy=policy_from(tmp_path, "broken.toml").get, runtime=healthy)
    assert [problem.setting for problem in problems] == ["ALLOCATION_POLICY_FILE"]
    assert "broken.toml" in problems[0].message


def test_missing_storage_setting_is_named() -> None:
    """No AzureWebJobsStorage: the store settings fail to build and the problem names it."""
    problems = check_readiness(policy=good_policy, runtime=lambda: build_runtime(load_settings({})))
    assert problems == [
        Problem("AzureWebJobsStorage", "required, expected a storage connection string")
    ]


def test_a_malformed_store_setting_is_named() -> None:
    """A store setting that does not parse is named by its own setting."""
    settings = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "STORE_TIMEOUT_SECONDS": "x"}
    problems = check_readiness(
        policy=good_policy, runtime=lambda: build_runtime(load_settings(settings))
    )
    assert [problem.setting for problem in problems] == ["STORE_TIMEOUT_SECONDS"]


def test_a_broken_policy_and_missing_storage_are_both_reported(tmp_path: Path) -> None:
    """Every problem is reported, the policy's first, not only the first one found."""
    problems = check_readiness(
        policy=policy_from(tmp_path, "nope.toml").get,
        runtime=lambda: build_runtime(load_settings({})),
    )
    assert [problem.setting for problem in problems] == [
        "ALLOCATION_POLICY_FILE",
        "AzureWebJobsStorage",
    ]


def test_unavailable_storage_names_the_storage_setting_without_its_value() -> None:
    """A store whose point read fails: a problem on AzureWebJobsStorage, no connection string."""
    store = MemoryStore()
    store.fail_with = StoreUnavailable("registration log: table service unreachable")
    (problem,) = check_readiness(policy=good_policy, runtime=lambda: healthy(store))
    assert problem.setting == "AzureWebJobsStorage"
    assert "does not answer" in problem.message
    assert "table service unreachable" in problem.message
    assert "AccountKey" not in str(problem)


class Hanging(MemoryStore):
    """A store whose point read blocks until released: Table storage that never answers."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.asked: list[str] = []

    def get_device(self, registration_id: str) -> DeviceRecord | None:
        self.asked.append(registration_id)
        self.release.wait(10)
        return None


def test_a_hanging_store_is_bounded_by_the_store_timeout() -> None:
    """A point read that never returns is given up after STORE_TIMEOUT_SECONDS, naming the setting."""
    store = Hanging()
    started = time.monotonic()
    try:
        problems = check_readiness(
            policy=good_policy, runtime=lambda: healthy(store, timeout_seconds=0.1)
        )
        elapsed = time.monotonic() - started
    finally:
        store.release.set()
    assert store.asked == [PROBE_REGISTRATION_ID]
    assert elapsed < 2
    (problem,) = problems
    assert problem.setting == "AzureWebJobsStorage"
    assert "no answer within the 0.1 s" in problem.message


def test_function_app_readiness_uses_the_configured_settings_and_runtime() -> None:
    """Under configured(), readiness reads the given policy setting and probes the given store."""
    store = MemoryStore()
    with function_app.configured(
        settings={"ALLOCATION_POLICY_FILE": "examples/tutorial-policy.toml"},
        runtime=healthy(store),
    ):
        assert function_app.readiness() == []
        store.fail_with = StoreUnavailable("down")
        assert [problem.setting for problem in function_app.readiness()] == ["AzureWebJobsStorage"]


def test_function_app_readiness_names_a_configured_policy_that_does_not_load() -> None:
    """A configured policy file that is missing is reported on ALLOCATION_POLICY_FILE."""
    with function_app.configured(
        settings={"ALLOCATION_POLICY_FILE": "examples/no-such-policy.toml"},
        runtime=healthy(),
    ):
        problems = function_app.readiness()
    assert [problem.setting for problem in problems] == ["ALLOCATION_POLICY_FILE"]
    assert "no-such-policy.toml" in problems[0].message


def test_function_app_readiness_builds_the_store_from_the_configured_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a runtime, the store is built from configured()'s settings, not the environment."""
    monkeypatch.setenv(
        "AzureWebJobsStorage",
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "TableEndpoint=http://127.48.0.1:9/devstoreaccount1;",
    )
    monkeypatch.setenv("STORE_TIMEOUT_SECONDS", "0.2")
    with function_app.configured(settings={}):
        problems = function_app.readiness()
    assert problems == [
        Problem("AzureWebJobsStorage", "required, expected a storage connection string")
    ]
