"""Registration ids: DPS's documented rules, and the one canonical form a device is known by.

**Rules.** The sources disagree (``docs/protocol/sas-and-keys.md`` §5): the DPS HTTPS reference
allows up to 128 characters from a-z A-Z 0-9 ``- . _ :``, the last one alphanumeric or ``-``,
matched case-insensitively; the group-enrollment page asks for lower-case a-z, 0-9 and ``-`` only.
``validate_registration_id`` treats breaking the first set as an error and leaving the second set as
a warning, or an error when ``strict``.

**Canonical identity.** DPS matches registration ids case-insensitively and shows them in lower
case, so ``Indiv-Dev`` and ``INDIV-DEV`` are one device: one key, one inventory row, one retired
flag. ``canonical_registration_id`` is the only way an id becomes a key or is compared (store keys,
the webhook's retired check, replay, lifecycle events matched by device id, the admin routes, the
allocation policy's matchers and hash):

    canonical(id) = NFKC(casefold(NFKC(id)))        (ASCII ids: just ``id.lower()``)

Unicode look-alikes, decided:

- Ids that Unicode itself calls the same text are one device: composed and decomposed ``é``,
  full-width letters (U+FF21 and on) and ASCII ones, ligatures (``ﬁ``/``fi``), ``ß``/``ss``, the
  Kelvin sign and ``k``. NFKC folds compatibility forms, case folding folds case, and the second
  NFKC re-composes what folding decomposed.
- Invisible characters are refused before they become an id: ``registration_id_problem`` accepts
  printable characters only (``str.isprintable``: no control, format such as zero-width space or
  joiner, separator, surrogate, private-use or unassigned code point) and no whitespace.
- Characters of different scripts that merely look alike (U+0061 LATIN SMALL LETTER A and U+0430
  CYRILLIC SMALL LETTER A) stay different devices. Merging them needs a confusables table that
  changes with Unicode versions and would join ids that are really different; and it buys
  nothing: DPS accepts ASCII ids only, so such an id never comes from DPS, and an id that is not
  the retired device's own id is authenticated by DPS as another registration with its own keys,
  which retiring never covered.

Pure: no I/O. Messages show the offending character and its position, never the whole id.
"""

from __future__ import annotations

import string
import unicodedata

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


def canonical_registration_id(value: str) -> str:
    """The form a registration id is keyed and compared by (see the module docstring)."""
    if value.isascii():
        return value.lower()
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())


def registration_id_problem(value: str) -> str | None:
    """Why ``value`` cannot identify a device, or None when it can.

    Looser than ``validate_registration_id`` (any printable characters, as device SDKs send them),
    strict about what would make an id ambiguous or unusable as a key: at most ``MAX_LENGTH``
    characters before and after canonicalisation, printable, no whitespace.
    """
    expected = f"1 to {MAX_LENGTH} printable characters without whitespace"
    if not value or len(value) > MAX_LENGTH:
        return f"{expected}, got {len(value)} characters"
    for position, char in enumerate(value, start=1):
        if not char.isprintable() or char.isspace():
            return f"{expected}, got U+{ord(char):04X} at position {position}"
    if len(canonical_registration_id(value)) > MAX_LENGTH:
        return f"{expected}, got one that is longer once normalised"
    return None
