"""Credentials and identities: SAS tokens and derived device keys (shared by the emulator and the
simulator), and registration ids (their DPS rules, and the canonical form the webhook and the
store key and compare devices by).

Pure and standard-library only (hmac, hashlib, base64, unicodedata, urllib.parse): no I/O, no
clock, no environment, no Azure SDK. The protocol is written down in
``docs/protocol/sas-and-keys.md`` and checked against the vectors in ``tests/fixtures/keys`` and
``tests/fixtures/sas``.

Modules:
    keys             strict key decoding, HMAC signing, ``derive_device_key``
    token            ``generate_sas_token``, ``parse_sas_token``, ``verify_sas_token``
    registration_id  ``validate_registration_id`` against DPS's documented rules;
                     ``canonical_registration_id``, the one form a device is known by
    errors           the exception tree:

    SasError (ValueError)     every error carries a short machine ``reason``
    ├── MalformedToken        -> CONNACK 5 / HTTP 401
    ├── TokenExpired          -> CONNACK 5 / HTTP 401
    ├── WrongResource         -> CONNACK 5 / HTTP 401
    ├── BadSignature          -> CONNACK 5 / HTTP 401
    ├── KeyFormatError        a key is not base64 of 16 to 64 bytes; ``name`` says which
    └── RegistrationIdError   a registration id breaks DPS's rules; ``problem`` says how
"""

from sas.errors import (
    BadSignature,
    KeyFormatError,
    MalformedToken,
    RegistrationIdError,
    SasError,
    TokenExpired,
    WrongResource,
)
from sas.keys import decode_key, derive_device_key, sign
from sas.registration_id import (
    canonical_registration_id,
    registration_id_problem,
    validate_registration_id,
)
from sas.token import SasToken, generate_sas_token, parse_sas_token, verify_sas_token

__all__ = [
    "BadSignature",
    "KeyFormatError",
    "MalformedToken",
    "RegistrationIdError",
    "SasError",
    "SasToken",
    "TokenExpired",
    "WrongResource",
    "canonical_registration_id",
    "decode_key",
    "derive_device_key",
    "generate_sas_token",
    "parse_sas_token",
    "registration_id_problem",
    "sign",
    "validate_registration_id",
    "verify_sas_token",
]
