"""Registration ids against DPS's documented rules: errors, warnings and strict mode."""

from __future__ import annotations

import json

import pytest
from hypothesis import given

from sas import (
    RegistrationIdError,
    SasError,
    canonical_registration_id,
    registration_id_problem,
    validate_registration_id,
)
from tests.fixtures import FIXTURES as ALL_FIXTURES
from tests.strategies import recommended_registration_ids, registration_ids

FIXTURES = ALL_FIXTURES


def test_fixture_ids_are_valid_and_recommended() -> None:
    """Every registration id in the key vectors passes, strictly, with no warning."""
    vectors = json.loads((FIXTURES / "keys" / "vectors.json").read_text())
    assert vectors
    for vector in vectors:
        assert validate_registration_id(vector["registrationId"], strict=True) == []


def test_128_characters_is_the_limit() -> None:
    """128 characters pass, 129 are refused as too long."""
    assert validate_registration_id("a" * 128) == []
    with pytest.raises(RegistrationIdError) as caught:
        validate_registration_id("a" * 129)
    assert caught.value.reason == "too_long"
    assert "at most 128 characters, got 129" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "reason", "detail"),
    [
        ("", "empty", "at least one character"),
        ("dev 001", "bad_character", "' ' at position 4"),
        ("dev/001", "bad_character", "'/' at position 4"),
        ("dev+001", "bad_character", "'+' at position 4"),
        ("dev@001", "bad_character", "'@' at position 4"),
        ("dév-001", "bad_character", "'é' at position 2"),
        ("dev-001\n", "bad_character", "'\\n' at position 8"),
        ("dev-001.", "bad_last_character", "last character '.'"),
        ("dev-001_", "bad_last_character", "last character '_'"),
        ("dev-001:", "bad_last_character", "last character ':'"),
    ],
)
def test_invalid_ids_name_the_problem(value: str, reason: str, detail: str) -> None:
    """Each broken rule raises RegistrationIdError with its reason and the offending character."""
    with pytest.raises(RegistrationIdError) as caught:
        validate_registration_id(value)
    assert isinstance(caught.value, SasError)
    assert caught.value.reason == reason
    assert str(caught.value).startswith("registration id: ")
    assert detail in caught.value.problem
    if value:
        assert value not in str(caught.value)


@pytest.mark.parametrize(
    ("value", "expected_fragments"),
    [
        ("SAS-IoT-Devices", ["upper-case"]),
        ("dev.001", ["'.', '_' or ':'"]),
        ("Dev_001", ["upper-case", "'.', '_' or ':'"]),
        ("my-device-", []),
    ],
)
def test_warnings_for_ids_outside_the_group_enrollment_set(
    value: str, expected_fragments: list[str]
) -> None:
    """Upper case and '. _ :' are accepted with a warning each; '-' last is fine."""
    warnings = validate_registration_id(value)
    assert len(warnings) == len(expected_fragments)
    for warning, fragment in zip(warnings, expected_fragments, strict=True):
        assert fragment in warning


def test_strict_turns_the_first_warning_into_an_error() -> None:
    """strict=True refuses an id that would only warn, with reason not_recommended."""
    with pytest.raises(RegistrationIdError) as caught:
        validate_registration_id("SAS-IoT-Devices", strict=True)
    assert caught.value.reason == "not_recommended"
    assert "upper-case" in caught.value.problem


@given(registration_ids())
def test_every_documented_id_is_accepted(value: str) -> None:
    """Any id built from DPS's documented character set passes (perhaps with warnings)."""
    assert len(validate_registration_id(value)) <= 2


@given(recommended_registration_ids())
def test_recommended_ids_pass_strict_mode(value: str) -> None:
    """Lower-case a-z, 0-9 and '-' ids pass strict validation with no warning."""
    assert validate_registration_id(value, strict=True) == []


@pytest.mark.parametrize(
    ("variants", "canonical"),
    [
        (["Indiv-Dev", "INDIV-DEV", "indiv-dev"], "indiv-dev"),
        (["caf\u00e9", "cafe\u0301", "CAF\u00c9", "CAFE\u0301"], "caf\u00e9"),
        (["\uff21\uff22\uff23", "abc", "ABC"], "abc"),
        (["\ufb01x", "FIX"], "fix"),
        (["stra\u00dfe", "STRASSE"], "strasse"),
        (["\u212a1", "k1"], "k1"),
    ],
)
def test_case_and_unicode_variants_share_one_canonical_id(
    variants: list[str], canonical: str
) -> None:
    """Case, composed/decomposed and compatibility forms of one id have one canonical form."""
    assert {canonical_registration_id(v) for v in variants} == {canonical}


def test_cross_script_look_alikes_stay_apart() -> None:
    """Latin 'a' and Cyrillic 'a' are different characters, so different devices."""
    assert canonical_registration_id("abc") != canonical_registration_id("\u0430bc")


@given(registration_ids())
def test_canonical_form_of_a_dps_id_is_its_lower_case(value: str) -> None:
    """For DPS's own characters the canonical form is what DPS shows: lower case, and it is stable."""
    assert canonical_registration_id(value) == value.lower()
    assert canonical_registration_id(canonical_registration_id(value)) == value.lower()
    assert registration_id_problem(value) is None


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("", "got 0 characters"),
        ("a" * 129, "got 129 characters"),
        ("dev\u200b001", "U+200B at position 4"),
        ("dev\n001", "U+000A at position 4"),
        ("dev 001", "U+0020 at position 4"),
        ("dev\u2028", "U+2028 at position 4"),
        ("dev\ud800", "U+D800 at position 4"),
        ("\ufdfa" * 8, "longer once normalised"),
    ],
)
def test_ids_that_cannot_identify_a_device(value: str, detail: str) -> None:
    """Empty, too long, invisible, whitespace, surrogate or over-long once normalised: refused."""
    problem = registration_id_problem(value)
    assert problem is not None
    assert detail in problem
