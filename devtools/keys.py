"""The one place keys and tokens are made: enrollment and policy keys, function keys, tokens.

`new_key(n)` is base64 of `n` random bytes, what Azure generates for SAS keys (DPS enrollment keys
are 64 bytes, IoT Hub policy and device keys 32). `new_token(n)` is the URL-safe form, for keys that
travel in a URL or a header as they are (a function key in `?code=`, the admin API's token).
"""

from __future__ import annotations

import base64
import secrets

__all__ = ["new_key", "new_token"]


def new_key(nbytes: int = 32) -> str:
    """Base64 of `nbytes` random bytes (a SAS key)."""
    return base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")


def new_token(nbytes: int = 32) -> str:
    """URL-safe base64 of `nbytes` random bytes, unpadded (a key that goes into a URL)."""
    return secrets.token_urlsafe(nbytes)
