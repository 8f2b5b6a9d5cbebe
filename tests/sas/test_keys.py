"""Known answers and properties of key decoding, signing and derived device keys."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sas import KeyFormatError, SasError, decode_key, derive_device_key, sign
from tests.fixtures import FIXTURES as ALL_FIXTURES
from tests.strategies import registration_ids, symmetric_keys

FIXTURES = ALL_FIXTURES


def _vectors(name: str) -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads((FIXTURES / name / "vectors.json").read_text())
    return vectors


KEY_VECTORS = _vectors("keys")
HMAC_VECTORS = [v for v in _vectors("sas") if v["kind"] == "hmac"]


@pytest.mark.parametrize("vector", KEY_VECTORS, ids=[v["id"] for v in KEY_VECTORS])
def test_derived_key_matches_published_vector(vector: dict[str, Any]) -> None:
    """derive_device_key reproduces every derived-key vector in tests/fixtures/keys."""
    assert derive_device_key(vector["groupKey"], vector["registrationId"]) == vector["derivedKey"]


@pytest.mark.parametrize(
    ("registration_id", "derived", "wrongly_published"),
    [
        (
            "contoso-toaster-007",
            "NXZgydIn9ntUpXfBsWFfaxJqAYVfgGQsshvA5GboGJI=",
            "JC8F96eayuQwwz+PkE7IzjH2lIAjCUnAa61tDigBnSs=",
        ),
        (
            "contoso-heatpump-088",
            "NI9dUEI2tga168Qi1U/HKuMmFHewrvaqI1MPTEU1A5w=",
            "6uejA9PfkQgmYylj8Zerp3kcbeVrGZ172YLa7VSnJzg=",
        ),
    ],
)
def test_derived_key_differs_from_known_wrong_tutorial_values(
    registration_id: str, derived: str, wrongly_published: str
) -> None:
    """The 2021 tutorial's pairs are wrong; the recomputed values of spec §7 are what we derive."""
    group_key = KEY_VECTORS[0]["groupKey"]
    assert derive_device_key(group_key, registration_id) == derived
    assert derived != wrongly_published


@pytest.mark.parametrize("vector", HMAC_VECTORS, ids=[v["id"] for v in HMAC_VECTORS])
def test_sign_matches_sdk_vector(vector: dict[str, Any]) -> None:
    """sign() reproduces the SDK's signing-mechanism unit-test vector."""
    assert sign(vector["key"], vector["stringToSign"]) == vector["sig"]


def test_derived_key_depends_on_the_exact_case_of_the_id() -> None:
    """DPS matches ids case-insensitively, but the derived key is over the id as given."""
    group_key = KEY_VECTORS[0]["groupKey"]
    assert derive_device_key(group_key, "Dev-1") != derive_device_key(group_key, "dev-1")


@pytest.mark.parametrize("size", [16, 32, 48, 64])
def test_decode_key_accepts_16_to_64_bytes(size: int) -> None:
    """Keys of 16 to 64 bytes in canonical base64 decode to their bytes."""
    raw = bytes(range(size))
    assert decode_key(base64.b64encode(raw).decode(), name="k") == raw


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "empty"),
        (base64.b64encode(bytes(15)).decode(), "15 bytes"),
        (base64.b64encode(bytes(65)).decode(), "65 bytes"),
        ("DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY", "missing padding"),
        ("DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl_cYJY=", "url-safe alphabet"),
        ("DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY=\n", "trailing newline"),
        (" DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY=", "leading space"),
        ("DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJZ=", "non-canonical last character"),
        ("DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJé=", "non-ASCII"),
    ],
)
def test_decode_key_rejects_and_names_the_key(value: str, why: str) -> None:
    """A bad key raises KeyFormatError (a SasError) naming the argument, never quoting the value."""
    with pytest.raises(KeyFormatError) as caught:
        decode_key(value, name="--group-primary-key")
    assert isinstance(caught.value, SasError), why
    assert caught.value.name == "--group-primary-key"
    assert caught.value.reason == "bad_key"
    assert str(caught.value).startswith("--group-primary-key: expected standard base64")
    if value.strip():
        assert value.strip() not in str(caught.value)


def test_derive_device_key_rejects_a_bad_group_key() -> None:
    """A group key that is not base64 of 16..64 bytes is refused, naming group_key."""
    with pytest.raises(KeyFormatError, match=r"^group_key: "):
        derive_device_key("not a key", "dev-001")


@given(group_key=symmetric_keys(), registration_id=registration_ids())
def test_derived_key_is_a_32_byte_key_usable_as_a_device_key(
    group_key: str, registration_id: str
) -> None:
    """Any derived key is 44 base64 characters of 32 bytes and is itself a valid key."""
    derived = derive_device_key(group_key, registration_id)
    assert len(derived) == 44
    assert len(decode_key(derived, name="derived")) == 32
    assert derived == sign(group_key, registration_id)


@given(group_key=symmetric_keys(), ids=st.lists(registration_ids(), min_size=2, unique=True))
def test_distinct_ids_get_distinct_keys(group_key: str, ids: list[str]) -> None:
    """Different registration ids never share a derived key under one group key."""
    derived = {derive_device_key(group_key, registration_id) for registration_id in ids}
    assert len(derived) == len(ids)
