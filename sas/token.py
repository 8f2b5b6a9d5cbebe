"""SAS tokens: generate them as the Python device SDK does, parse and verify any client's form.

Rules (docs/protocol/sas-and-keys.md §1-§4):

- Shape: ``SharedAccessSignature sr={resource}&sig={signature}&se={expiry}[&skn={policy}]``;
  fields in any order, each exactly once; nothing else.
- Signed string: ``sr`` exactly as it appears in the token, ``"\\n"``, ``se``. Python SDKs send
  ``sr`` URL-encoded, Node's DPS client sends it raw: signing over what was sent accepts both.
- Signature: base64 of HMAC-SHA256 under the base64-decoded key, URL-encoded into the token
  (``quote(sig, safe="")`` by the device SDK; azure-iot-hub leaves ``/`` raw).
- Verification: expiry first (``se`` must be after ``now``), then the resource, compared
  case-insensitively after URL-decoding, then the signature in constant time against each key.
- ``se`` is at most ``MAX_EXPIRY`` (the last second of year 9999): Azure's services hold it in a
  .NET ``DateTime``, so a later expiry fails there and is refused here as malformed.

Pure: no clock (``now`` is an argument), no I/O. Neither a token nor a signature nor a key
appears in an error message or a ``repr``.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from sas.errors import BadSignature, KeyFormatError, MalformedToken, TokenExpired, WrongResource
from sas.keys import decode_key, hmac_sha256_base64

PREFIX = "SharedAccessSignature "
_REQUIRED = ("sr", "sig", "se")
_OPTIONAL = ("skn",)
_EXPIRY = re.compile(r"0|[1-9][0-9]{0,19}")  # no leading zeros: `se` is re-rendered to verify


MAX_EXPIRY = 253_402_300_799  # 9999-12-31T23:59:59Z


@dataclass(frozen=True, kw_only=True)
class SasToken:
    """A parsed SAS token: the resource both as sent and URL-decoded, and the decoded signature."""

    resource_as_sent: str
    resource: str
    signature: str = field(repr=False)
    expiry: int
    key_name: str | None = None


def generate_sas_token(uri: str, key: str, expiry: int, policy_name: str | None = None) -> str:
    """Return the token azure-iot-device 2.14.0 builds for ``uri`` (byte for byte)."""
    resource = quote(uri, safe="")
    signature = hmac_sha256_base64(decode_key(key, name="key"), f"{resource}\n{expiry}")
    token = f"{PREFIX}sr={resource}&sig={quote(signature, safe='')}&se={expiry}"
    if policy_name:
        token += f"&skn={policy_name}"
    return token


def parse_sas_token(token: str) -> SasToken:
    """Parse a SAS token in any client's form, or raise MalformedToken naming the problem."""
    if not token.startswith(PREFIX):
        raise MalformedToken(f"token: expected the prefix {PREFIX.strip()!r}", reason="bad_prefix")
    fields: dict[str, str] = {}
    for part in token[len(PREFIX) :].split("&"):
        name, equals, value = part.partition("=")
        if not equals:
            raise MalformedToken("token: expected name=value fields separated by '&'")
        if name not in _REQUIRED and name not in _OPTIONAL:
            raise MalformedToken(
                f"token: unexpected field {name[:16]!r}; expected sr, sig, se and optionally skn",
                reason="unknown_field",
            )
        if name in fields:
            raise MalformedToken(f"token: field {name!r} appears twice", reason="duplicate_field")
        if not value:
            raise MalformedToken(f"token: field {name!r} is empty", reason="empty_field")
        fields[name] = value
    missing = [name for name in _REQUIRED if name not in fields]
    if missing:
        raise MalformedToken(
            f"token: missing field(s) {', '.join(missing)}", reason="missing_field"
        )
    if not _EXPIRY.fullmatch(fields["se"]) or int(fields["se"]) > MAX_EXPIRY:
        raise MalformedToken(
            "token: field 'se' expected seconds since the epoch in decimal, no leading zeros, "
            "no later than the end of year 9999",
            reason="bad_expiry",
        )
    return SasToken(
        resource_as_sent=fields["sr"],
        resource=unquote(fields["sr"]),
        signature=unquote(fields["sig"]),
        expiry=int(fields["se"]),
        key_name=fields.get("skn"),
    )


def verify_sas_token(
    token: SasToken, keys: Sequence[str], *, expected_resource: str, now: float
) -> int:
    """Return the index in ``keys`` of the key that signed ``token``.

    Raises TokenExpired, WrongResource or BadSignature (all SasError). A key that is not valid
    base64 of 16 to 64 bytes (say an empty secondary key) matches nothing; the BadSignature
    message then names it. Every key is tried, so timing does not tell which one matched.
    """
    if token.expiry <= now:
        raise TokenExpired("token: field 'se' is not after the current time")
    if token.resource.lower() != expected_resource.lower():
        raise WrongResource("token: field 'sr' names another resource than the one accessed")
    string_to_sign = f"{token.resource_as_sent}\n{token.expiry}"
    presented = token.signature.encode("utf-8")
    matched: int | None = None
    invalid: list[str] = []
    for index, key in enumerate(keys):
        try:
            raw_key = decode_key(key, name=f"keys[{index}]")
        except KeyFormatError as error:
            invalid.append(error.name)
            continue
        expected = hmac_sha256_base64(raw_key, string_to_sign)
        if hmac.compare_digest(expected.encode("ascii"), presented) and matched is None:
            matched = index
    if matched is None:
        unusable = f" ({', '.join(invalid)} not a valid key)" if invalid else ""
        raise BadSignature(f"token: field 'sig' matches none of the keys{unusable}")
    return matched
