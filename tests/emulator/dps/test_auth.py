"""Tests for emulator.dps.auth: who may register, with which keys."""

from __future__ import annotations

from typing import Any

import pytest

from emulator.dps.auth import AuthenticationError, authenticate
from sas.keys import derive_device_key
from sas.token import generate_sas_token
from tests.emulator.dps.registrants import (
    GROUP_KEY,
    NOW,
    OTHER_KEY,
    USERNAME,
    make_config,
    sas_vector,
)


@pytest.mark.parametrize("vector_id", ["E1", "N1"])
def test_group_token_vectors_authenticate_with_the_secondary_key(vector_id: str) -> None:
    """Python (encoded sr) and Node (raw sr, skn=registration) tokens pass via the derived key."""
    result = authenticate(
        make_config(),
        client_id="dev-001",
        username=USERNAME,
        password=sas_vector(vector_id)["token"].encode(),
        now=NOW,
    )
    assert result.registration_id == "dev-001"
    assert result.device_primary_key == derive_device_key(OTHER_KEY, "dev-001")
    assert result.device_secondary_key == sas_vector("E1")["key"]


def test_individual_enrollment_uses_its_own_keys() -> None:
    """An individual enrollment authenticates with its keys and names its device id."""
    config = make_config()
    token = generate_sas_token("0ne00000001/registrations/dev-42", OTHER_KEY, int(NOW) + 60)
    result = authenticate(
        config,
        client_id="dev-42",
        username=USERNAME.replace("dev-001", "dev-42"),
        password=token.encode(),
        now=NOW,
    )
    assert result.device_id == "device-42"
    assert (result.device_primary_key, result.device_secondary_key) == (GROUP_KEY, OTHER_KEY)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"now": 2_000_000_001.0}, "expired"),
        ({"username": USERNAME.replace("0ne00000001", "0ne00000999")}, "unknown id scope"),
        ({"username": "0ne00000001/registrations/dev-001/?api-version=2019-03-31"}, "malformed"),
        ({"client_id": "dev-002"}, "client id"),
        ({"password": None}, "no password"),
        ({"password": b"Bearer x"}, "malformed token"),
        ({"password": b"\xff"}, "malformed token"),
    ],
)
def test_bad_connects_are_refused(change: dict[str, Any], reason: str) -> None:
    """Expired, foreign, malformed or mismatched CONNECTs raise AuthenticationError (CONNACK 5)."""
    arguments: dict[str, Any] = {
        "client_id": "dev-001",
        "username": USERNAME,
        "password": sas_vector("E1")["token"].encode(),
        "now": NOW,
        **change,
    }
    with pytest.raises(AuthenticationError) as caught:
        authenticate(make_config(), **arguments)
    assert reason in caught.value.reason or reason in str(caught.value)
    assert caught.value.connack == 5


def test_wrong_key_is_refused_without_leaking_the_token() -> None:
    """A token signed with another key is refused; the error quotes no token or key."""
    token = generate_sas_token("0ne00000001/registrations/dev-001", GROUP_KEY, int(NOW) + 60)
    with pytest.raises(AuthenticationError) as caught:
        authenticate(
            make_config(), client_id="dev-001", username=USERNAME, password=token.encode(), now=NOW
        )
    assert caught.value.reason == "bad_signature"
    assert token.split("sig=")[1].split("&")[0] not in str(caught.value)
