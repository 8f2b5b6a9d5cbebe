"""Registration ids checked against DPS's documented rules.

The sources disagree (docs/protocol/sas-and-keys.md §5): the DPS HTTPS reference allows up to 128
characters from a-z A-Z 0-9 ``- . _ :``, the last one alphanumeric or ``-``, matched
case-insensitively; the group-enrollment page asks for lower-case a-z, 0-9 and ``-`` only. Breaking
the first set is an error; leaving the second set is a warning, or an error when ``strict``.

Pure: no I/O. Messages show the offending character and its position, never the whole id.
"""

from __future__ import annotations

import string

from sas.errors import RegistrationIdError

MAX_LENGTH = 128
_ALNUM = frozenset(string.ascii_letters + string.digits)
_ALLOWED = _ALNUM | frozenset("-._:")
_ALLOWED_LAST = _ALNUM | {"-"}

UPPER_CASE_WARNING = (
    "contains upper-case letters: DPS matches registration ids case-insensitively, but the "
    "derived key depends on the exact case, and group enrollments document lower-case a-z, 0-9 "
    "and '-' only"
)
PUNCTUATION_WARNING = (
    "contains '.', '_' or ':': DPS accepts them, but group enrollments document lower-case "
    "a-z, 0-9 and '-' only"
)


def validate_registration_id(value: str, *, strict: bool = False) -> list[str]:
    """Raise RegistrationIdError if DPS would reject ``value``; return warnings otherwise.

    With ``strict`` a warning is raised as a RegistrationIdError (reason ``not_recommended``).
    """
    if not value:
        raise RegistrationIdError("expected at least one character, got none", reason="empty")
    if len(value) > MAX_LENGTH:
        raise RegistrationIdError(
            f"expected at most {MAX_LENGTH} characters, got {len(value)}", reason="too_long"
        )
    for position, char in enumerate(value, start=1):
        if char not in _ALLOWED:
            raise RegistrationIdError(
                f"character {char!r} at position {position} is not allowed; expected letters, "
                "digits, '-', '.', '_' or ':'",
                reason="bad_character",
            )
    if value[-1] not in _ALLOWED_LAST:
        raise RegistrationIdError(
            f"the last character {value[-1]!r} is not allowed; expected a letter, a digit or '-'",
            reason="bad_last_character",
        )
    warnings = []
    if any(char.isupper() for char in value):
        warnings.append(UPPER_CASE_WARNING)
    if any(char in "._:" for char in value):
        warnings.append(PUNCTUATION_WARNING)
    if strict and warnings:
        raise RegistrationIdError(warnings[0], reason="not_recommended")
    return warnings
