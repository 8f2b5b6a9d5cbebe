"""SAS tokens: known answers, every client's form, round trips and every failure path."""

from __future__ import annotations

import dataclasses
import json
import string
from typing import Any

import pytest
from azure.iot.device.common.auth.sastoken import RenewableSasToken
from azure.iot.device.common.auth.signing_mechanism import SymmetricKeySigningMechanism
from azure.iot.hub.sastoken import SasToken as ServiceSasToken
from hypothesis import assume, given
from hypothesis import strategies as st

from sas import (
    BadSignature,
    MalformedToken,
    SasError,
    SasToken,
    TokenExpired,
    WrongResource,
    generate_sas_token,
    parse_sas_token,
    sign,
    verify_sas_token,
)
from tests.fixtures import FIXTURES as ALL_FIXTURES
from tests.strategies import expiries, registration_ids, symmetric_keys

FIXTURES = ALL_FIXTURES
VECTORS: list[dict[str, Any]] = [
    v for v in json.loads((FIXTURES / "sas" / "vectors.json").read_text()) if v["kind"] == "sas"
]
# Tokens from other clients than azure-iot-device: Node's DPS client (raw sr, skn before se) and
# azure-iot-hub's service token (quote_plus'd host, '/' left raw in sig).
OTHER_CLIENT_FORMS = {"N1", "SVC1"}
E1 = next(v for v in VECTORS if v["id"] == "E1")
OTHER_KEY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
uris = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=200)
policy_names = st.none() | st.text(string.ascii_letters + string.digits, min_size=1, max_size=20)


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["id"] for v in vectors]


@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_parse_reads_every_vector(vector: dict[str, Any]) -> None:
    """Parsing each vector's token yields its sr as sent, decoded resource, sig, se and skn."""
    token = parse_sas_token(vector["token"])
    assert token.resource_as_sent == vector["sr"]
    assert token.resource == vector["uri"]
    assert token.signature == vector["sig"]
    assert token.expiry == vector["expiry"]
    assert token.key_name == vector["skn"]
    assert f"{token.resource_as_sent}\n{token.expiry}" == vector["stringToSign"]
    assert sign(vector["key"], vector["stringToSign"]) == vector["sig"]


@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_verify_accepts_every_vector(vector: dict[str, Any]) -> None:
    """Python-SDK, Node-SDK and service tokens all verify against their key, one second early."""
    token = parse_sas_token(vector["token"])
    index = verify_sas_token(
        token, [vector["key"]], expected_resource=vector["uri"], now=vector["expiry"] - 1
    )
    assert index == 0


@pytest.mark.parametrize("vector", VECTORS, ids=_ids(VECTORS))
def test_generate_reproduces_device_sdk_tokens(vector: dict[str, Any]) -> None:
    """generate_sas_token is byte-identical to azure-iot-device's tokens, and only to those."""
    generated = generate_sas_token(vector["uri"], vector["key"], vector["expiry"], vector["skn"])
    if vector["id"] in OTHER_CLIENT_FORMS:
        assert generated != vector["token"]
    else:
        assert generated == vector["token"]


def test_verify_reports_which_key_matched() -> None:
    """The index of the matching key is returned: a secondary key gives 1."""
    token = parse_sas_token(E1["token"])
    assert verify_sas_token(token, [OTHER_KEY, E1["key"]], expected_resource=E1["uri"], now=0) == 1


def test_verify_compares_the_resource_case_insensitively() -> None:
    """A resource differing only in case is the same resource."""
    token = parse_sas_token(E1["token"])
    assert verify_sas_token(token, [E1["key"]], expected_resource=E1["uri"].upper(), now=0) == 0


@pytest.mark.parametrize("now", [E1["expiry"], E1["expiry"] + 0.5, E1["expiry"] + 3600])
def test_verify_refuses_an_expired_token(now: float) -> None:
    """A token whose se is not after now raises TokenExpired."""
    token = parse_sas_token(E1["token"])
    with pytest.raises(TokenExpired) as caught:
        verify_sas_token(token, [E1["key"]], expected_resource=E1["uri"], now=now)
    assert caught.value.reason == "expired"


def test_verify_accepts_a_token_until_its_last_instant() -> None:
    """Half a second before se the token is still valid."""
    token = parse_sas_token(E1["token"])
    now = E1["expiry"] - 0.5
    assert verify_sas_token(token, [E1["key"]], expected_resource=E1["uri"], now=now) == 0


@pytest.mark.parametrize(
    "resource",
    ["0ne00000001/registrations/dev-002", "0ne00000002/registrations/dev-001", "127.0.0.3"],
)
def test_verify_refuses_a_token_for_another_resource(resource: str) -> None:
    """A token for another registration, scope or host raises WrongResource."""
    token = parse_sas_token(E1["token"])
    with pytest.raises(WrongResource) as caught:
        verify_sas_token(token, [E1["key"]], expected_resource=resource, now=0)
    assert caught.value.reason == "wrong_resource"


@pytest.mark.parametrize("keys", [[OTHER_KEY], [], [OTHER_KEY, OTHER_KEY]])
def test_verify_refuses_a_token_signed_by_another_key(keys: list[str]) -> None:
    """When no key produces the signature, BadSignature is raised without quoting it."""
    token = parse_sas_token(E1["token"])
    with pytest.raises(BadSignature) as caught:
        verify_sas_token(token, keys, expected_resource=E1["uri"], now=0)
    assert caught.value.reason == "bad_signature"
    assert E1["sig"] not in str(caught.value)


@pytest.mark.parametrize("bad_key", ["", "c2hvcnQ=", "not base64"])
def test_an_invalid_key_matches_nothing_and_is_named(bad_key: str) -> None:
    """An unusable key (e.g. an empty secondary) never matches; BadSignature names its index."""
    token = parse_sas_token(E1["token"])
    with pytest.raises(BadSignature, match=r"\(keys\[1\] not a valid key\)$"):
        verify_sas_token(token, [OTHER_KEY, bad_key], expected_resource=E1["uri"], now=0)


def test_a_valid_key_still_matches_beside_an_invalid_one() -> None:
    """A device with a good primary and an empty secondary key authenticates with the primary."""
    token = parse_sas_token(E1["token"])
    assert verify_sas_token(token, [E1["key"], ""], expected_resource=E1["uri"], now=0) == 0
    assert verify_sas_token(token, ["", E1["key"]], expected_resource=E1["uri"], now=0) == 1


def test_verify_signs_over_sr_exactly_as_sent() -> None:
    """Re-encoding sr (raw instead of encoded) changes the signed string and fails."""
    token = parse_sas_token(E1["token"])
    raw = dataclasses.replace(token, resource_as_sent=token.resource)
    with pytest.raises(BadSignature):
        verify_sas_token(raw, [E1["key"]], expected_resource=E1["uri"], now=0)


def test_repr_hides_the_signature() -> None:
    """A SasToken's repr (as it might reach a log) does not contain the signature."""
    token = parse_sas_token(E1["token"])
    assert E1["sig"] not in repr(token)
    assert "dev-001" in repr(token)


GOOD = "sr=0ne00000001%2Fregistrations%2Fdev-001&sig=abc%3D&se=2000000000"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (GOOD, "bad_prefix"),
        ("sharedaccesssignature " + GOOD, "bad_prefix"),
        ("SharedAccessSignature" + GOOD, "bad_prefix"),
        ("SharedAccessSignature sig=abc%3D&se=2000000000", "missing_field"),
        ("SharedAccessSignature sr=x&se=2000000000", "missing_field"),
        ("SharedAccessSignature sr=x&sig=abc", "missing_field"),
        ("SharedAccessSignature ", "malformed_token"),
        ("SharedAccessSignature " + GOOD + "&", "malformed_token"),
        ("SharedAccessSignature " + GOOD + "&skn", "malformed_token"),
        ("SharedAccessSignature " + GOOD + "&sr=y", "duplicate_field"),
        ("SharedAccessSignature " + GOOD + "&skn=a&skn=a", "duplicate_field"),
        ("SharedAccessSignature " + GOOD + "&foo=bar", "unknown_field"),
        ("SharedAccessSignature " + GOOD + "&SKN=a", "unknown_field"),
        ("SharedAccessSignature " + GOOD + "&skn=", "empty_field"),
        ("SharedAccessSignature sr=&sig=abc&se=1", "empty_field"),
        ("SharedAccessSignature sr=x&sig=abc&se=soon", "bad_expiry"),
        ("SharedAccessSignature sr=x&sig=abc&se=-1", "bad_expiry"),
        ("SharedAccessSignature sr=x&sig=abc&se=+1", "bad_expiry"),
        ("SharedAccessSignature sr=x&sig=abc&se=1.5", "bad_expiry"),
        ("SharedAccessSignature sr=x&sig=abc&se=01", "bad_expiry"),
        ("SharedAccessSignature sr=x&sig=abc&se= 1", "bad_expiry"),
        ("SharedAccessSignature sr=x&sig=abc&se=1_000", "bad_expiry"),
        ("SharedAccessSignature sr=x&sig=abc&se=" + "9" * 21, "bad_expiry"),
    ],
)
def test_parse_refuses_malformed_tokens(token: str, reason: str) -> None:
    """Each malformation raises MalformedToken with its reason and without quoting the sig."""
    with pytest.raises(MalformedToken) as caught:
        parse_sas_token(token)
    assert isinstance(caught.value, SasError)
    assert caught.value.reason == reason
    assert str(caught.value).startswith("token: ")
    assert "abc" not in str(caught.value)


def test_parse_keeps_a_sig_with_raw_slashes_and_equals() -> None:
    """Fields split on the first '=': a sig with '/' and a raw '=' survives (service form)."""
    token = parse_sas_token("SharedAccessSignature sr=h&sig=a/b+c=&se=5")
    assert token.signature == "a/b+c="


@given(uri=uris, key=symmetric_keys(), expiry=expiries(), policy=policy_names)
def test_round_trip_generate_parse_verify(
    uri: str, key: str, expiry: int, policy: str | None
) -> None:
    """Any uri, key, expiry and policy name survive generate -> parse -> verify."""
    token = parse_sas_token(generate_sas_token(uri, key, expiry, policy))
    assert token.resource == uri
    assert token.expiry == expiry
    assert token.key_name == policy
    assert verify_sas_token(token, [key], expected_resource=uri, now=expiry - 1) == 0


@given(
    key=symmetric_keys(),
    expiry=expiries(),
    position=st.integers(min_value=0, max_value=43),
    replacement=st.sampled_from(string.ascii_letters + string.digits + "+/"),
)
def test_a_flipped_signature_character_fails(
    key: str, expiry: int, position: int, replacement: str
) -> None:
    """Changing any one character of the signature makes verification fail."""
    token = parse_sas_token(generate_sas_token("scope/registrations/dev", key, expiry))
    signature = token.signature
    flipped = signature[:position] + replacement + signature[position + 1 :]
    assume(flipped != signature)
    tampered = dataclasses.replace(token, signature=flipped)
    with pytest.raises(BadSignature):
        verify_sas_token(tampered, [key], expected_resource=token.resource, now=expiry - 1)


@given(key=symmetric_keys(), other=symmetric_keys(), expiry=expiries())
def test_another_key_fails(key: str, other: str, expiry: int) -> None:
    """A token signed with one key does not verify under a different key."""
    assume(key != other)
    token = parse_sas_token(generate_sas_token("hub/devices/dev", key, expiry))
    with pytest.raises(BadSignature):
        verify_sas_token(token, [other], expected_resource="hub/devices/dev", now=expiry - 1)


@given(
    scope=st.text(string.ascii_letters + string.digits, min_size=1, max_size=12),
    registration_id=registration_ids(),
    key=symmetric_keys(),
    policy=policy_names,
)
def test_device_sdk_tokens_match_and_verify(
    scope: str, registration_id: str, key: str, policy: str | None
) -> None:
    """azure-iot-device's RenewableSasToken equals generate_sas_token and verifies."""
    uri = f"{scope}/registrations/{registration_id}"
    mechanism = SymmetricKeySigningMechanism(key)  # type: ignore[no-untyped-call]
    sdk_token = RenewableSasToken(uri, mechanism, key_name=policy)  # type: ignore[no-untyped-call]
    expiry = sdk_token.expiry_time
    assert generate_sas_token(uri, key, expiry, policy) == str(sdk_token)
    parsed = parse_sas_token(str(sdk_token))
    assert verify_sas_token(parsed, [key], expected_resource=uri, now=expiry - 1) == 0


@given(
    host=st.from_regex(r"[a-z0-9]{1,20}(\.[a-z0-9]{1,10}){0,3}(:[0-9]{1,5})?", fullmatch=True),
    key=symmetric_keys(),
    policy=st.sampled_from(["iothubowner", "registryReadWrite", "service"]),
)
def test_service_sdk_tokens_verify(host: str, key: str, policy: str) -> None:
    """azure-iot-hub's service token (quote_plus'd host, port included) verifies under its key."""
    service_token = str(ServiceSasToken(host, key, policy))
    parsed = parse_sas_token(service_token)
    assert parsed.key_name == policy
    assert verify_sas_token(parsed, [key], expected_resource=host, now=parsed.expiry - 1) == 0


def test_sas_token_is_frozen_and_keyword_only() -> None:
    """SasToken is an immutable value built with keywords."""
    token = SasToken(resource_as_sent="a", resource="a", signature="s", expiry=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        token.expiry = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        SasToken("a", "a", "s", 1)  # type: ignore[call-arg]
