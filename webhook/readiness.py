"""Can the app serve registrations? The checks a local host makes before it says "ready".

Azure's Functions host starts an app whatever its settings; a broken one then answers every DPS call
with 429 (storage unreachable, fail-closed) or 503 (policy file broken), and DPS retries each
registration ten times over about seven minutes before failing it with 400207. On a laptop that is
a device that hangs for minutes with the cause only in a log. So the local Functions host
(`python -m emulator up`, `--host-functions`) calls `check_readiness` first and refuses to start
with the setting named:

    ALLOCATION_POLICY_FILE   the policy file loads (file, rule and field of the first problem)
    <store settings>         AzureWebJobsStorage is set and every store setting parses
    AzureWebJobsStorage      Table storage answers one point read within STORE_TIMEOUT_SECONDS

Each `Problem` names the setting and says what to do. Nothing here prints a connection string.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from allocation import Policy
from allocation.errors import PolicyError
from store.base import StoreError
from store.deadline import call_with_deadline
from store.runtime import Runtime
from store.settings import STORAGE_SETTING, SettingsError
from webhook.policy_source import SETTING as POLICY_SETTING

__all__ = ["PROBE_REGISTRATION_ID", "Problem", "check_readiness"]

PROBE_REGISTRATION_ID = "readiness-probe"


@dataclass(frozen=True)
class Problem:
    """One reason the app cannot serve: the setting at fault and what is wrong with it."""

    setting: str
    message: str

    def __str__(self) -> str:
        return f"{self.setting}: {self.message}"


def check_readiness(
    *, policy: Callable[[], Policy], runtime: Callable[[], Runtime]
) -> list[Problem]:
    """Every problem found (an empty list: ready)."""
    problems: list[Problem] = []
    try:
        policy()
    except PolicyError as error:
        problems.append(Problem(POLICY_SETTING, f"the policy does not load: {error}"))
    try:
        built = runtime()
    except SettingsError as error:
        setting, _, message = str(error).partition(": ")
        problems.append(Problem(setting, message or str(error)))
        return problems
    try:
        call_with_deadline(
            lambda: built.store.get_device(PROBE_REGISTRATION_ID),
            built.settings.timeout_seconds,
            what="readiness probe",
            inline=built.store.bounds_own_calls,
        )
    except StoreError as error:
        problems.append(
            Problem(
                STORAGE_SETTING,
                f"Table storage does not answer ({error}); start it (`make up` starts Azurite) "
                "or point the setting at a storage account",
            )
        )
    return problems
