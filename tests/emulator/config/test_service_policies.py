"""Config: per-hub service policies and the [events] url."""

from __future__ import annotations

import pytest

from emulator.config import ConfigError, parse_config

KEY = "iZlcsgZYcqfw02/f1mcrIYTcbCmWZSgIgQ4ED9Kp/fE="


def test_policy_defaults_and_explicit_keys() -> None:
    """A hub without a key gets iothubowner and key None; an explicit key and name are kept."""
    config = parse_config(
        {
            "hubs": [
                {"name": "a.azure-devices.net"},
                {
                    "name": "b.azure-devices.net",
                    "shared_access_key_name": "svc",
                    "shared_access_key": KEY,
                },
            ],
            "events": {"url": "http://127.0.0.1:7071/runtime/webhooks/EventGrid?functionName=f"},
        },
        source="t.toml",
    )
    first, second = config.service_policies
    assert (first.hub, first.key_name, first.key) == ("a.azure-devices.net", "iothubowner", None)
    assert (second.key_name, second.key) == ("svc", KEY)
    assert config.events_url is not None
    assert KEY not in repr(config)


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ({"shared_access_key": "not base64"}, "shared_access_key"),
        ({"shared_access_key_name": "bad name!"}, "shared_access_key_name"),
    ],
)
def test_bad_policy_fields_are_named(extra: dict[str, str], where: str) -> None:
    """A malformed policy key or name is refused with the field in the message."""
    with pytest.raises(ConfigError, match=where):
        parse_config({"hubs": [{"name": "a.azure-devices.net", **extra}]}, source="t.toml")


def test_events_url_must_be_http() -> None:
    """[events] url must be an http(s) URL."""
    with pytest.raises(ConfigError, match=r"\[events\]: url"):
        parse_config(
            {"hubs": [{"name": "a.azure-devices.net"}], "events": {"url": "ftp://x"}},
            source="t.toml",
        )
