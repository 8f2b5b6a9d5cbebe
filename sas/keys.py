"""Symmetric keys: strict decoding, HMAC-SHA256 signing and derived device keys.

A derived device key is ``base64(HMAC-SHA256(base64decode(groupKey), registrationId))``
(docs/protocol/sas-and-keys.md §5). The group key must never reach a device: the key CLI derives
per-device keys at manufacturing time, the emulator derives them to check a device's token.

Pure: standard library only, no I/O. Errors never contain key material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from sas.errors import KeyFormatError

MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 64
_EXPECTED = (
    f"standard base64 (A-Z a-z 0-9 + / and = padding) of {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes"
)


def decode_key(value: str, *, name: str) -> bytes:
    """Decode a DPS/IoT Hub symmetric key, or raise KeyFormatError naming ``name``.

    Strict: standard alphabet, correct padding, canonical encoding (what Azure generates and
    what ``base64.b64encode`` gives back), no whitespace, 16 to 64 bytes once decoded.
    """
    if not value:
        raise KeyFormatError(name, f"{_EXPECTED}, got an empty value")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise KeyFormatError(name, _EXPECTED) from None
    if base64.b64encode(raw).decode("ascii") != value:
        raise KeyFormatError(name, f"{_EXPECTED} in canonical form")
    if not MIN_KEY_BYTES <= len(raw) <= MAX_KEY_BYTES:
        raise KeyFormatError(name, f"{_EXPECTED}, got {len(raw)} bytes")
    return raw


def hmac_sha256_base64(key: bytes, message: str) -> str:
    """Return base64(HMAC-SHA256(key, message encoded as UTF-8))."""
    digest = hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def sign(key: str, message: str) -> str:
    """Sign ``message`` with a base64 key the way the device SDKs do (vector S1)."""
    return hmac_sha256_base64(decode_key(key, name="key"), message)


def derive_device_key(group_key: str, registration_id: str) -> str:
    """Derive the device key of ``registration_id`` from a group enrollment key.

    The id is signed exactly as given: DPS matches registration ids case-insensitively, but the
    derived key of ``Dev-1`` differs from that of ``dev-1``.
    """
    return hmac_sha256_base64(decode_key(group_key, name="group_key"), registration_id)
