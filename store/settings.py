"""Store and retire settings, read from an injected mapping (`os.environ` at the shell, a dict in tests).

| setting | default | meaning |
|---|---|---|
| `AzureWebJobsStorage` | required for the Table store | storage connection string; `UseDevelopmentStorage=true` targets Azurite on 127.0.0.1:10002 |
| `REGISTRY_TABLE_PREFIX` | `dps` | table-name prefix: `<prefix>Registrations` (log and inventory; `<prefix>Devices` and `<prefix>RegistrationsByHour` of earlier versions until `python -m store migrate`) |
| `STORE_TIMEOUT_SECONDS` | `2` | bound on all store calls of one webhook invocation together (`store.deadline`), and on each request (connect + read, one attempt, no retries) |
| `RETIRED_CHECK` | `fail-closed` | what the webhook does when the retired check cannot be made: `fail-closed` answers 429 (DPS retries; a possibly retired device is never admitted), `fail-open` admits and logs a warning |
| `IOTHUB_CONNECTION_STRING__<HUB>` | — | service connection string for one hub; `<HUB>` is the hub host name upper-cased with every non-alphanumeric character replaced by `_` (`hub-1.azure-devices.net` → `HUB_1_AZURE_DEVICES_NET`) |
| `IOTHUB_USE_MANAGED_IDENTITY` | `false` | `true`: hubs without a connection string are reached with the app's managed identity (needs `azure-identity`) |
| `REPLAY_SIGNING_KEY` | unset | key (at least 32 characters) the webhook signs its replay lines with (HMAC-SHA256) and `python -m store replay` checks them with; without it replay lines are unsigned and replay refuses them unless told to accept unsigned lines |

The app-setting style `NAME__SUFFIX` is what Functions already uses for nested settings and survives
every hosting plan's environment-variable rules (a JSON map in one setting would not be editable per
hub in the portal).

Secrets (connection strings, the replay signing key) are held in fields excluded from `repr`, so
a logged settings object never shows them. Errors: `SettingsError` (ValueError) naming the setting and what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from store.base import StoreError

STORAGE_SETTING = "AzureWebJobsStorage"
PREFIX_SETTING = "REGISTRY_TABLE_PREFIX"
TIMEOUT_SETTING = "STORE_TIMEOUT_SECONDS"
RETIRED_CHECK_SETTING = "RETIRED_CHECK"
HUB_SETTING_PREFIX = "IOTHUB_CONNECTION_STRING__"
MANAGED_IDENTITY_SETTING = "IOTHUB_USE_MANAGED_IDENTITY"
REPLAY_KEY_SETTING = "REPLAY_SIGNING_KEY"
MIN_REPLAY_KEY_CHARS = 32
DEV_STORAGE = "UseDevelopmentStorage=true"
DEFAULT_PREFIX = "dps"
DEFAULT_TIMEOUT_SECONDS = 2.0
_PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,39}$")


class SettingsError(StoreError, ValueError):
    """A setting is missing or malformed; the message names it (never its value if it is a secret)."""

    http_status = 500


class RetiredCheck(StrEnum):
    """Policy when the retired-device check cannot be made."""

    FAIL_CLOSED = "fail-closed"
    FAIL_OPEN = "fail-open"


@dataclass(frozen=True, kw_only=True)
class StoreSettings:
    """Everything the store and the retire flow need from the environment."""

    connection_string: str | None = field(default=None, repr=False)
    table_prefix: str = DEFAULT_PREFIX
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    retired_check: RetiredCheck = RetiredCheck.FAIL_CLOSED
    hub_connection_strings: Mapping[str, str] = field(default_factory=dict, repr=False)
    use_managed_identity: bool = False
    replay_key: bytes | None = field(default=None, repr=False)

    def require_connection_string(self) -> str:
        """The storage connection string, or `SettingsError` naming the setting."""
        if not self.connection_string:
            raise SettingsError(
                f"{STORAGE_SETTING}: required, expected a storage connection string"
            )
        return self.connection_string

    def hub_connection_string(self, hub: str) -> str | None:
        """The service connection string configured for a hub host name, or None."""
        return self.hub_connection_strings.get(hub_setting_suffix(hub))


def hub_setting_suffix(hub: str) -> str:
    """`hub-1.azure-devices.net` → `HUB_1_AZURE_DEVICES_NET` (the `<HUB>` part of the setting name)."""
    return re.sub(r"[^A-Z0-9]", "_", hub.upper())


def load_settings(env: Mapping[str, str]) -> StoreSettings:
    """Read and validate every setting from `env`."""
    return StoreSettings(
        connection_string=_storage(env.get(STORAGE_SETTING)),
        table_prefix=_prefix(env.get(PREFIX_SETTING, DEFAULT_PREFIX)),
        timeout_seconds=_timeout(env.get(TIMEOUT_SETTING)),
        retired_check=_retired_check(env.get(RETIRED_CHECK_SETTING)),
        hub_connection_strings=_hub_connection_strings(env),
        use_managed_identity=_flag(MANAGED_IDENTITY_SETTING, env.get(MANAGED_IDENTITY_SETTING)),
        replay_key=_replay_key(env.get(REPLAY_KEY_SETTING)),
    )


def _hub_connection_strings(env: Mapping[str, str]) -> dict[str, str]:
    found = {}
    for name, value in env.items():
        if name.upper().startswith(HUB_SETTING_PREFIX) and value.strip():
            _refuse_unresolved_reference(name, value)
            found[name[len(HUB_SETTING_PREFIX) :].upper()] = value
    return found


def _storage(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    _refuse_unresolved_reference(STORAGE_SETTING, value)
    value = value.strip()
    # The SDK matches UseDevelopmentStorage=true exactly; a trailing ';' (a common copy-paste) would fail.
    if value.rstrip(";").lower() == DEV_STORAGE.lower():
        return DEV_STORAGE
    return value


def _prefix(value: str) -> str:
    if not _PREFIX_RE.match(value):
        raise SettingsError(
            f"{PREFIX_SETTING}: expected a letter then up to 39 letters or digits, got {value!r}"
        )
    return value


def _timeout(value: str | None) -> float:
    if value is None or not value.strip():
        return DEFAULT_TIMEOUT_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        raise SettingsError(
            f"{TIMEOUT_SETTING}: expected a number of seconds, got {value!r}"
        ) from None
    if not 0 < seconds <= 60:
        raise SettingsError(f"{TIMEOUT_SETTING}: expected 0 < seconds <= 60, got {value!r}")
    return seconds


def _retired_check(value: str | None) -> RetiredCheck:
    if value is None or not value.strip():
        return RetiredCheck.FAIL_CLOSED
    try:
        return RetiredCheck(value.strip().lower())
    except ValueError:
        raise SettingsError(
            f"{RETIRED_CHECK_SETTING}: expected fail-closed or fail-open, got {value!r}"
        ) from None


def _flag(name: str, value: str | None) -> bool:
    if value is None or not value.strip():
        return False
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise SettingsError(f"{name}: expected true or false, got {value!r}")


UNRESOLVED_REFERENCE_PREFIX = "@microsoft.keyvault("


def _refuse_unresolved_reference(name: str, value: str) -> None:
    """App Service leaves a Key Vault reference it cannot resolve as the setting's text."""
    if value.strip().lower().startswith(UNRESOLVED_REFERENCE_PREFIX):
        raise SettingsError(
            f"{name}: the Key Vault reference was not resolved (check the app's identity has "
            "'Key Vault Secrets User' on the vault and the secret exists)"
        )


def _replay_key(value: str | None) -> bytes | None:
    if value is None or not value.strip():
        return None
    _refuse_unresolved_reference(REPLAY_KEY_SETTING, value)
    if len(value.strip()) < MIN_REPLAY_KEY_CHARS:
        # Never the value: it is a secret, even a short one.
        raise SettingsError(
            f"{REPLAY_KEY_SETTING}: expected at least {MIN_REPLAY_KEY_CHARS} characters "
            "(for example 32 random bytes in base64)"
        )
    return value.strip().encode("utf-8")
