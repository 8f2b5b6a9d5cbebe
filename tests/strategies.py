"""Hypothesis strategies shared across the test suite."""

from __future__ import annotations

import base64
import string

from hypothesis import strategies as st

# --- sas: keys and registration ids (docs/protocol/sas-and-keys.md §5) ---


def symmetric_keys() -> st.SearchStrategy[str]:
    """Base64 symmetric keys of 16 to 64 bytes, as DPS and IoT Hub accept them."""
    return st.binary(min_size=16, max_size=64).map(lambda raw: base64.b64encode(raw).decode())


def registration_ids() -> st.SearchStrategy[str]:
    """Registration ids DPS accepts: up to 128 of a-z A-Z 0-9 - . _ :, last alnum or '-'."""
    body = st.text(string.ascii_letters + string.digits + "-._:", max_size=127)
    last = st.sampled_from(string.ascii_letters + string.digits + "-")
    return st.builds(lambda head, tail: head + tail, body, last)


def recommended_registration_ids() -> st.SearchStrategy[str]:
    """Registration ids the group-enrollment documentation recommends: a-z, 0-9 and '-'."""
    return st.text(string.ascii_lowercase + string.digits + "-", min_size=1, max_size=128)


def expiries() -> st.SearchStrategy[int]:
    """SAS expiries in seconds since the epoch, up to the year 2100."""
    return st.integers(min_value=1, max_value=4_102_444_800)


# --- allocation: AllocationRequests (docs/protocol/webhook.md §2) ---


def hub_names() -> st.SearchStrategy[str]:
    """IoT hub host names as linkedHubs carries them (mixed case is seen in real requests)."""
    label = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=20)
    return label.map(lambda name: f"{name}.azure-devices.net")


def linked_hubs(min_size: int = 1, max_size: int = 8) -> st.SearchStrategy[list[str]]:
    """A linkedHubs array: distinct host names, compared case-insensitively."""
    return st.lists(
        hub_names(), min_size=min_size, max_size=max_size, unique_by=lambda hub: hub.casefold()
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def allocation_requests(draw: st.DrawFn) -> dict[str, object]:
    """Well-formed AllocationRequest documents, group or individual, initial or re-registration."""
    hubs = draw(linked_hubs())
    context: dict[str, object] = {"registrationId": draw(registration_ids()), "symmetricKey": {}}
    if draw(st.booleans()):
        context["currentIotHubHostName"] = draw(st.sampled_from(hubs) | hub_names())
        context["currentDeviceId"] = context["registrationId"]
    if draw(st.booleans()):
        context["payload"] = draw(json_values)
    document: dict[str, object] = {"deviceRuntimeContext": context, "linkedHubs": hubs}
    if draw(st.booleans()):
        document["enrollmentGroup"] = {"enrollmentGroupId": draw(registration_ids())}
    else:
        document["individualEnrollment"] = {"registrationId": context["registrationId"]}
    return document


# --- emulator: what reaches the HTTPS port (docs/protocol/transports.md) ---


def header_values() -> st.SearchStrategy[str]:
    """Values an HTTP header can carry: visible ASCII and spaces, no CR or LF."""
    return st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


def url_paths(prefixes: list[str]) -> st.SearchStrategy[str]:
    """Paths: one of `prefixes` (to get past routing) or nothing, then arbitrary segments,
    percent-escapes and `..` included."""
    segment = st.text(string.ascii_letters + string.digits + "-._~%$!'()*+,;=:@", max_size=12)
    tail = st.lists(segment, max_size=6).map("/".join)
    return st.builds(lambda head, rest: head + rest, st.sampled_from(["/", *prefixes]), tail)
