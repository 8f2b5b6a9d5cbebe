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


# --- emulator.service.query: twins and IoT Hub queries (docs/protocol/hub-service-rest.md §11) ---

# Small pools, so that generated conditions and generated twins often meet.
_query_strings = st.sampled_from(["a", "b", "US", "Redmond43", "", "wifi"])
_query_numbers = st.sampled_from([0, 1, 2, 60, 300, -1, 2.5])
_query_scalars = st.one_of(_query_strings, _query_numbers, st.booleans(), st.none())


def _query_constant(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return repr(value)


@st.composite
def twin_documents(draw: st.DrawFn, device_id: str | None = None) -> dict[str, object]:
    """Twins as the service API shows them, their tags and properties drawn from small pools."""
    tags: dict[str, object] = {}
    for key in ("site", "floor", "group", "Site"):
        if draw(st.booleans()):
            tags[key] = draw(_query_scalars)
    if draw(st.booleans()):
        tags["list"] = draw(st.lists(_query_scalars, max_size=3))
    if draw(st.booleans()):
        tags["location"] = {"region": draw(_query_strings)}
    reported: dict[str, object] = {"$version": draw(st.integers(1, 5))}
    if draw(st.booleans()):
        reported["temp"] = draw(_query_scalars)
    return {
        "deviceId": device_id if device_id is not None else draw(_query_strings),
        "status": draw(st.sampled_from(["enabled", "disabled"])),
        "connectionState": draw(st.sampled_from(["Connected", "Disconnected"])),
        "version": draw(st.integers(2, 9)),
        "tags": tags,
        "properties": {"desired": {"$version": 1}, "reported": reported},
        "capabilities": {"iotEdge": draw(st.booleans())},
    }


_query_paths = st.sampled_from(
    [
        "deviceId",
        "DeviceId",
        "devices.deviceId",
        "status",
        "connectionState",
        "version",
        "tags.site",
        "tags.Site",
        "tags.floor",
        "tags.[[group]]",
        "tags.location.region",
        "tags.location",
        "properties.reported.temp",
        "properties.reported.$version",
        "properties.desired.$version",
        "capabilities.iotEdge",
        "tags.missing.deeper",
    ]
)


def _query_leaves() -> st.SearchStrategy[str]:
    constant = _query_scalars.map(_query_constant)
    operator = st.sampled_from(["=", "!=", "<>", "<", ">", "<=", ">="])
    constants = st.lists(_query_scalars, max_size=4).map(
        lambda values: "[" + ", ".join(map(_query_constant, values)) + "]"
    )
    return st.one_of(
        st.builds("{} {} {}".format, _query_paths, operator, constant),
        st.builds("{} {} {}".format, _query_paths, operator, _query_paths),
        st.builds("{} {} {}".format, _query_paths, st.sampled_from(["IN", "NIN"]), constants),
        st.builds("IS_DEFINED({})".format, _query_paths),
        st.builds(
            "{}({}, {})".format,
            st.sampled_from(["STARTSWITH", "ENDSWITH"]),
            _query_paths,
            _query_strings.map(_query_constant),
        ),
        st.builds("ARRAY_CONTAINS(tags.list, {})".format, constant),
        st.builds("{} + 1 > {}".format, _query_paths, constant),
    )


def query_conditions() -> st.SearchStrategy[str]:
    """Well-formed WHERE conditions: comparisons, IN/NIN, functions, AND/OR/NOT, parentheses."""
    return st.recursive(
        _query_leaves(),
        lambda inner: st.one_of(
            st.builds("({}) AND ({})".format, inner, inner),
            st.builds("({}) OR ({})".format, inner, inner),
            st.builds("NOT ({})".format, inner),
        ),
        max_leaves=8,
    )


@st.composite
def queries(draw: st.DrawFn) -> str:
    """Well-formed queries: SELECT [TOP n] *, a projection or an aggregate, FROM devices, WHERE,
    GROUP BY; keywords in any case."""
    case = draw(st.sampled_from([str.upper, str.lower, str.title]))
    top = f"{case('top')} {draw(st.integers(0, 5))} " if draw(st.booleans()) else ""
    shape = draw(st.sampled_from(["star", "projection", "count", "group"]))
    group = ""
    if shape == "star":
        selection = "*"
    elif shape == "projection":
        paths = draw(st.lists(_query_paths, min_size=1, max_size=3, unique=True))
        selection = ", ".join(f"{path} {case('as')} c{index}" for index, path in enumerate(paths))
    elif shape == "count":
        selection = f"COUNT() {case('as')} n"
    else:
        path = draw(_query_paths)
        selection = f"{path} {case('as')} k, COUNT() {case('as')} n, MAX(version) {case('as')} m"
        group = f" {case('group by')} {path}"
    where = f" {case('where')} {draw(query_conditions())}" if draw(st.booleans()) else ""
    return f"{case('select')} {top}{selection} {case('from')} devices{where}{group}"


_QUERY_PIECES = (
    "SELECT", "FROM", "WHERE", "GROUP", "BY", "AS", "AND", "OR", "NOT", "IN", "NIN",
    "TOP", "devices", "devices.modules", "*", ",", ".", "(", ")", "[", "]", "[[group]]",
    "=", "!=", "<>", "<", ">=", "+", "-", "/", "%", "'a'", '"b"', "'\\u0041'", "'\\x'",
    "1", "0x1F", "1e999", "2.5", "true", "null", "undefined", "tags.site", "deviceId",
    "IS_DEFINED", "STARTSWITH", "COUNT()", "CONTAINS", "'", "\\", "#", " ", "\n", "\u00e9",
)  # fmt: skip


def query_fragments() -> st.SearchStrategy[str]:
    """Text made of the query language's own pieces in any order: mostly not a query."""
    return st.lists(st.sampled_from(_QUERY_PIECES), max_size=40).map(" ".join)


@st.composite
def broken_queries(draw: st.DrawFn) -> str:
    """A well-formed query with a stretch of it replaced by a piece of the language."""
    text = draw(queries())
    start = draw(st.integers(0, len(text)))
    end = draw(st.integers(start, len(text)))
    return text[:start] + draw(st.sampled_from(_QUERY_PIECES)) + text[end:]


# --- emulator: what reaches the HTTPS port (docs/protocol/transports.md) ---


def header_values() -> st.SearchStrategy[str]:
    """Values an HTTP header can carry: visible ASCII and inner spaces, no CR or LF (a client
    such as h11 refuses to send leading or trailing whitespace, which a server strips anyway)."""
    return st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(
        str.strip
    )


def url_paths(prefixes: list[str]) -> st.SearchStrategy[str]:
    """Paths: one of `prefixes` (to get past routing) or nothing, then arbitrary segments,
    percent-escapes and `..` included."""
    segment = st.text(string.ascii_letters + string.digits + "-._~%$!'()*+,;=:@", max_size=12)
    tail = st.lists(segment, max_size=6).map("/".join)
    return st.builds(lambda head, rest: head + rest, st.sampled_from(["/", *prefixes]), tail)
