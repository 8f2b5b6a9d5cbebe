"""The one URL masker: what logs, messages and documents show of a URL that may carry a secret.

A webhook URL carries its function key in the query (`?code=`), an event or storage URL may carry a
SAS signature (`?sig=`), so the whole query goes: `https://app/api/allocate?code=K` becomes
`https://app/api/allocate?****`, exactly as DPS shows the webhook URL in an AllocationRequest
(`docs/protocol/webhook.md` §1). The fragment goes too; user information (`user:password@`) is
masked the same way. A string that is not a URL is shown as `<unparseable URL>`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["MASK", "mask_url"]

MASK = "****"


def mask_url(url: str) -> str:
    """`url` without anything that can hold a secret: the query becomes `?****`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        host = parts.hostname or ""
        netloc = f"{MASK}@{host}" + (f":{port}" if port is not None else "")
    base = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else parts.path
    return f"{base}?{MASK}" if parts.query or url.split("#", 1)[0].endswith("?") else base
