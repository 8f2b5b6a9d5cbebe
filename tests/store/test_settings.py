"""Settings from an injected mapping: defaults, validation naming the setting, secrets kept out of repr."""

from __future__ import annotations

import pytest

from store.settings import (
    DEV_STORAGE,
    RetiredCheck,
    SettingsError,
    StoreSettings,
    hub_setting_suffix,
    load_settings,
)

HUB_CS = "HostName=hub-1.azure-devices.net;SharedAccessKeyName=registryReadWrite;SharedAccessKey=c2VjcmV0"


def test_defaults() -> None:
    """An empty environment gives the documented defaults and no storage."""
    settings = load_settings({})
    assert settings == StoreSettings()
    assert settings.retired_check is RetiredCheck.FAIL_CLOSED
    assert settings.timeout_seconds == 2.0
    assert settings.table_prefix == "dps"
    with pytest.raises(SettingsError, match="AzureWebJobsStorage: required"):
        settings.require_connection_string()


@pytest.mark.parametrize(
    "value",
    ["UseDevelopmentStorage=true", "UseDevelopmentStorage=true;", " usedevelopmentstorage=TRUE "],
)
def test_development_storage_is_normalised(value: str) -> None:
    """UseDevelopmentStorage=true is passed in the exact form the SDK matches."""
    assert load_settings({"AzureWebJobsStorage": value}).connection_string == DEV_STORAGE


def test_all_settings_read() -> None:
    """Every setting is read from the mapping."""
    settings = load_settings(
        {
            "REGISTRY_TABLE_PREFIX": "prod1",
            "STORE_TIMEOUT_SECONDS": "0.5",
            "RETIRED_CHECK": "Fail-Open",
            "IOTHUB_CONNECTION_STRING__HUB_1_AZURE_DEVICES_NET": HUB_CS,
            "IOTHUB_USE_MANAGED_IDENTITY": "true",
        }
    )
    assert (settings.table_prefix, settings.timeout_seconds) == ("prod1", 0.5)
    assert settings.retired_check is RetiredCheck.FAIL_OPEN
    assert settings.hub_connection_string("hub-1.azure-devices.net") == HUB_CS
    assert settings.hub_connection_string("HUB-1.Azure-Devices.NET") == HUB_CS
    assert settings.hub_connection_string("hub-2.azure-devices.net") is None
    assert settings.use_managed_identity


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REGISTRY_TABLE_PREFIX": "9abc"}, "REGISTRY_TABLE_PREFIX: expected a letter"),
        ({"REGISTRY_TABLE_PREFIX": "a-b"}, "REGISTRY_TABLE_PREFIX"),
        ({"STORE_TIMEOUT_SECONDS": "soon"}, "STORE_TIMEOUT_SECONDS: expected a number"),
        ({"STORE_TIMEOUT_SECONDS": "0"}, "STORE_TIMEOUT_SECONDS: expected 0 < seconds"),
        ({"RETIRED_CHECK": "maybe"}, "RETIRED_CHECK: expected fail-closed or fail-open"),
        (
            {"IOTHUB_USE_MANAGED_IDENTITY": "perhaps"},
            "IOTHUB_USE_MANAGED_IDENTITY: expected true or false",
        ),
    ],
)
def test_bad_settings_name_the_setting(env: dict[str, str], message: str) -> None:
    """A malformed setting raises SettingsError naming it."""
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_secrets_are_not_in_repr() -> None:
    """Connection strings never show in the settings' repr."""
    settings = load_settings(
        {"AzureWebJobsStorage": "AccountKey=c2VjcmV0;x", "IOTHUB_CONNECTION_STRING__H": HUB_CS}
    )
    assert "c2VjcmV0" not in repr(settings)


def test_hub_setting_suffix() -> None:
    """Host names normalise to upper case with non-alphanumerics as underscores."""
    assert (
        hub_setting_suffix("contoso-toasters-hub-1098.azure-devices.net")
        == "CONTOSO_TOASTERS_HUB_1098_AZURE_DEVICES_NET"
    )


def test_replay_signing_key() -> None:
    """REPLAY_SIGNING_KEY: unset is None, 32+ characters are the key (never in repr), shorter is
    an error that names the setting and not the value."""
    assert load_settings({}).replay_key is None
    key = "k" * 31 + "!"
    settings = load_settings({"REPLAY_SIGNING_KEY": key})
    assert settings.replay_key == key.encode()
    assert key not in repr(settings)
    with pytest.raises(SettingsError) as raised:
        load_settings({"REPLAY_SIGNING_KEY": "short-secret"})
    assert "REPLAY_SIGNING_KEY: expected at least 32 characters" in str(raised.value)
    assert "short-secret" not in str(raised.value)


@pytest.mark.parametrize(
    "name", ["REPLAY_SIGNING_KEY", "AzureWebJobsStorage", "IOTHUB_CONNECTION_STRING__HUB_1"]
)
def test_unresolved_key_vault_reference_is_refused(name: str) -> None:
    """A secret setting still holding its Key Vault reference (the platform could not resolve it)
    is refused by name; the reference text is never taken as a key or connection string."""
    reference = "@Microsoft.KeyVault(VaultName=dpsa-kv-x;SecretName=replay-signing-key)"
    with pytest.raises(SettingsError, match=f"{name}: the Key Vault reference was not resolved"):
        load_settings({name: reference})
