"""Errors of the SAS and key package.

    SasError                  base class; every error carries a short machine ``reason``
    ├── MalformedToken        the token is not ``SharedAccessSignature sr=…&sig=…&se=…[&skn=…]``
    ├── TokenExpired          ``se`` is not after ``now``
    ├── WrongResource         ``sr`` names another resource than the one being accessed
    ├── BadSignature          no key produces the token's signature
    ├── KeyFormatError        a key is not standard base64 of 16 to 64 bytes (names the key)
    └── RegistrationIdError   a registration id breaks DPS's documented rules

The four token errors are authentication failures: an MQTT broker answers CONNACK 5, an HTTP
endpoint 401. Messages name the field and what was expected; they never quote a key, a signature
or a token.
"""

from __future__ import annotations


class SasError(ValueError):
    """Base class of every error this package raises."""

    reason = "sas_error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class MalformedToken(SasError):
    """The token string does not have the shape of a SAS token."""

    reason = "malformed_token"


class TokenExpired(SasError):
    """The token's expiry (``se``) is not after the current time."""

    reason = "expired"


class WrongResource(SasError):
    """The token was issued for another resource (``sr``)."""

    reason = "wrong_resource"


class BadSignature(SasError):
    """None of the candidate keys produces the token's signature."""

    reason = "bad_signature"


class KeyFormatError(SasError):
    """A key is not standard base64 of 16 to 64 bytes; ``name`` says which key."""

    reason = "bad_key"

    def __init__(self, name: str, expected: str) -> None:
        super().__init__(f"{name}: expected {expected}")
        self.name = name


class RegistrationIdError(SasError):
    """A registration id breaks DPS's rules; ``reason`` names the rule, ``problem`` explains it."""

    reason = "bad_registration_id"

    def __init__(self, problem: str, *, reason: str) -> None:
        super().__init__(f"registration id: {problem}", reason=reason)
        self.problem = problem
