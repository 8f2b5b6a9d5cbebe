"""IoT Hub's query language, pure: the documented examples, type semantics, errors, paging, fuzz."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.service.query import (
    MAX_NESTING,
    MAX_PAGE_SIZE,
    MAX_QUERY_LENGTH,
    Cursor,
    Query,
    QueryError,
    decode_cursor,
    page_size,
    parse,
)
from tests.strategies import (
    broken_queries,
    queries,
    query_conditions,
    query_fragments,
    twin_documents,
)

# The sample twin of Microsoft's "Queries for IoT Hub device and module twins" (query-twins.md).
DOC_TWIN: dict[str, Any] = {
    "deviceId": "myDeviceId",
    "etag": "AAAAAAAAAAc=",
    "status": "enabled",
    "statusUpdateTime": "0001-01-01T00:00:00",
    "connectionState": "Disconnected",
    "lastActivityTime": "0001-01-01T00:00:00",
    "cloudToDeviceMessageCount": 0,
    "authenticationType": "sas",
    "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None},
    "version": 2,
    "tags": {"location": {"region": "US", "plant": "Redmond43"}},
    "properties": {
        "desired": {
            "telemetryConfig": {"configId": "db00ebf5", "sendFrequencyInSecs": 300},
            "$version": 4,
        },
        "reported": {
            "connectivity": {"type": "cellular"},
            "telemetryConfig": {
                "configId": "db00ebf5",
                "sendFrequencyInSecs": 300,
                "status": "Success",
            },
            "$version": 7,
        },
    },
}

FUZZ = settings(max_examples=150, deadline=1000, suppress_health_check=[HealthCheck.too_slow])


def twin(device_id: str, **fields: Any) -> dict[str, Any]:
    document = json.loads(json.dumps(DOC_TWIN))
    document["deviceId"] = device_id
    for name, value in fields.items():
        document[name] = value
    return document


def pages(text: str, documents: list[Mapping[str, Any]], size: int = MAX_PAGE_SIZE) -> list[Any]:
    """The items of each page of `text` over `documents` (keyed by deviceId), tokens followed."""
    query = parse(text)
    by_id = {document["deviceId"]: document for document in documents}
    found: list[Any] = []
    token: str | None = None
    for _ in range(len(documents) + 2):
        page = query.page(sorted(by_id), by_id.get, decode_cursor(token, query), size)
        found.append(page.items)
        token = page.continuation
        if token is None:
            return found
    raise AssertionError("paging did not end")


def run(text: str, documents: list[Mapping[str, Any]], size: int = MAX_PAGE_SIZE) -> list[Any]:
    """Every item of every page of `text` over `documents`."""
    return [item for page in pages(text, documents, size) for item in page]


def where(condition: str, document: Mapping[str, Any] = DOC_TWIN) -> bool:
    return parse(f"SELECT * FROM devices WHERE {condition}").matches(document)


# -- the documented examples --------------------------------------------------------------------


@pytest.mark.parametrize(
    "condition",
    [
        "tags.location.region = 'US'",
        "tags.location.region = 'US' AND properties.reported.telemetryConfig.sendFrequencyInSecs >= 60",
        "properties.reported.connectivity.type IN ['wired', 'cellular']",
        "is_defined(properties.reported.connectivity)",
        "status = 'enabled' AND connectionState = 'Disconnected'",
        "properties.desired.$version = 4 AND version = 2",
    ],
)
def test_documented_conditions_match_the_documented_twin(condition: str) -> None:
    """Each WHERE example of Microsoft's query docs selects the docs' sample twin."""
    assert where(condition)


def test_documented_projection_answers_fields_in_the_twins_spelling() -> None:
    """`SELECT DeviceId, LastActivityTime` answers deviceId and lastActivityTime, as documented."""
    rows = run(
        "SELECT DeviceId, LastActivityTime FROM devices "
        "WHERE status = 'enabled' AND connectionState = 'Disconnected'",
        [DOC_TWIN, twin("off", status="disabled")],
    )
    assert rows == [{"deviceId": "myDeviceId", "lastActivityTime": "0001-01-01T00:00:00"}]


def test_documented_group_by_counts_devices_per_status() -> None:
    """The docs' GROUP BY example: a count per reported status, aliases as field names."""
    statuses = ["Success", "Pending", "Success", "Error", "Pending", "Success"]
    documents = []
    for index, status in enumerate(statuses):
        document = twin(f"d{index}")
        document["properties"]["reported"]["telemetryConfig"]["status"] = status
        documents.append(document)
    rows = run(
        "SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices "
        "FROM devices GROUP BY properties.reported.telemetryConfig.status",
        documents,
    )
    assert rows == [
        {"status": "Success", "numberOfDevices": 3},
        {"status": "Pending", "numberOfDevices": 2},
        {"status": "Error", "numberOfDevices": 1},
    ]


def test_count_without_group_by_is_one_row_even_when_nothing_matches() -> None:
    """`SELECT COUNT() AS n` answers [{"n": N}]; no match is [{"n": 0}], not []."""
    documents = [twin("a"), twin("b", status="disabled")]
    assert run("SELECT COUNT() as totalNumberOfDevices FROM devices", documents) == [
        {"totalNumberOfDevices": 2}
    ]
    assert run("select count() AS n from devices where status = 'disabled'", documents) == [
        {"n": 1}
    ]
    assert run("SELECT COUNT() AS n FROM devices WHERE deviceId = 'nobody'", documents) == [
        {"n": 0}
    ]


# -- semantics -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        # different types compare as undefined: never true, and NOT does not make them true
        ("version = '2'", False),
        ("version != '2'", False),
        ("NOT (version = '2')", False),
        ("version <> 3", True),
        ("tags.location = 'US'", False),  # objects do not compare
        ("tags.nothing = null", False),  # undefined is not null
        ("tags.nothing != 1", False),
        ("NOT is_defined(tags.nothing)", True),
        # three-valued AND / OR
        ("version = '2' OR version = 2", True),
        ("version = '2' AND version = 3", False),
        ("NOT (version = '2' AND version = 3)", True),
        ("NOT (version = '2' OR version = 3)", False),
        # IN / NIN
        ("deviceId IN ['x', 'myDeviceId']", True),
        ("deviceId NIN ['x', 'y']", True),
        ("deviceId NIN ['myDeviceId']", False),
        ("version IN ['2']", False),
        ("version NIN ['2']", False),
        ("version IN [2.0]", True),
        ("capabilities.iotEdge IN [1]", False),
        ("deviceId IN []", False),
        ("deviceId IN ['myDeviceId', 1]", True),
        ("deviceId IN ['x', 1]", False),
        ("deviceId NIN ['x', 1]", False),  # 'myDeviceId' = 1 is undefined, so is the NIN
        ("deviceId = 'x' OR deviceId = 'myDeviceId' OR version = 3", True),
        # ordering within a type
        ("deviceId > 'my'", True),
        ("deviceId < 'my'", False),
        ("version >= 2 AND version <= 2 AND version < 2.5 AND version > 1", True),
        ("x509Thumbprint.primaryThumbprint = null", True),
        ("x509Thumbprint.primaryThumbprint <= null", True),
        ("x509Thumbprint.primaryThumbprint < null", False),
        # arithmetic
        ("version + 1 = 3 AND version - 3 = -1 AND version * 1.5 = 3", True),
        ("version / 4 = 0.5 AND version % 3 = 2 AND -version = -2", True),
        ("-7 % 3 = -1", True),
        ("version / 0 = 1", False),
        ("NOT (version / 0 = 1)", False),
        ("deviceId + 1 = 1", False),
        ("0x1F = 31 AND 1e2 = 100", True),
        # functions
        ("STARTSWITH(deviceId, 'my') AND ENDSWITH(deviceId, 'Id')", True),
        ("startswith(deviceId, 'My')", False),
        ("NOT startswith(deviceId, 'x')", True),
        ("STARTSWITH(version, '2')", False),
        ("is_defined(properties.desired.telemetryConfig)", True),
        ("is_defined(x509Thumbprint.primaryThumbprint)", True),  # null is defined
        # names: the twin's own fields in any case, user keys exactly, devices. prefix, escapes
        ("DEVICEID = 'myDeviceId' AND Properties.Reported.$version = 7", True),
        ("devices.deviceId = 'myDeviceId'", True),
        ("tags.Location.region = 'US'", False),
        ("tags.[[location]].plant = 'Redmond43'", True),
        ("true", True),
        ("'text'", False),
        ("1", False),
    ],
)
def test_condition_semantics(condition: str, expected: bool) -> None:
    """Types never mix, logic is three-valued, names resolve as IoT Hub resolves them."""
    assert where(condition) is expected


def test_user_keys_with_hyphens_escapes_and_arrays() -> None:
    """`KeyQuery-1b2c` is one name, `[[group]]` reaches a key called group, ARRAY_CONTAINS works."""
    document = twin("d1")
    document["tags"] = {"group": "north", "KeyQuery-1b2c": 5, "list": ["a", 1, True]}
    assert where("tags.KeyQuery-1b2c = 5 AND tags.[[group]] = 'north'", document)
    assert where("tags.KeyQuery-1b2c - 1 = 4", document)
    assert where("ARRAY_CONTAINS(tags.list, 'a') AND ARRAY_CONTAINS(tags.list, true)", document)
    assert not where("ARRAY_CONTAINS(tags.list, 'b')", document)
    assert not where("ARRAY_CONTAINS(tags.list, 'b') OR ARRAY_CONTAINS(tags.nothing, 1)", document)


def test_projection_names_values_and_leaves_out_undefined() -> None:
    """Aliases, last segments and $N name fields; undefined values are left out; objects pass."""
    rows = run(
        "SELECT deviceId AS id, tags.location, tags.nothing, version + 1, "
        "properties.reported.$version FROM devices",
        [DOC_TWIN],
    )
    assert rows == [
        {
            "id": "myDeviceId",
            "location": {"region": "US", "plant": "Redmond43"},
            "$4": 3,
            "$version": 7,
        }
    ]
    query = parse("SELECT deviceId FROM devices")
    assert query.item_type == "raw"
    assert parse("select top 1 * from devices").item_type == "twin"


def test_aggregates_and_groups_of_undefined() -> None:
    """SUM/AVG/MIN/MAX over numbers; a group whose key is undefined has no key field."""
    documents = [twin("a", version=2), twin("b", version=4), twin("c", version=9)]
    documents[2]["tags"] = {"site": "x"}
    rows = run(
        "SELECT tags.site AS site, COUNT() AS n, SUM(version) AS s, AVG(version) AS a, "
        "MIN(version) AS lo, MAX(version) AS hi, SUM(deviceId) AS none FROM devices "
        "GROUP BY tags.site",
        documents,
    )
    assert rows == [
        {"n": 2, "s": 6.0, "a": 3.0, "lo": 2, "hi": 4},
        {"site": "x", "n": 1, "s": 9.0, "a": 9.0, "lo": 9, "hi": 9},
    ]
    assert run("SELECT COUNT() AS n FROM devices GROUP BY status", []) == []


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SELECT * FORM devices", "query: at line 1, column 10: expected FROM, found 'FORM'"),
        ("SELECT * FROM devices WHERE", "column 28: expected an expression, found the end"),
        ("SELECT FROM devices", "column 8: expected an expression or * or TOP, found 'FROM'"),
        ("SELECT *\nFROM devices\nWHERE a = 'x", "line 3, column 11: unterminated string"),
        ("SELECT * FROM devices WHERE a == 1", "column 32: expected an expression, found '='"),
        ("SELECT * FROM devices WHERE x IN ('a')", "expected [, found '('"),
        ("SELECT * FROM devices WHERE a = #", "unexpected character '#'"),
        ("SELECT * FROM devices.modules", "FROM devices.modules at line 1, column 15: module"),
        ("select * from Devices.Jobs", "FROM devices.jobs at line 1, column 15"),
        ("SELECT * FROM jobs", "expected devices (device twins), not 'jobs'"),
        ("SELECT * FROM devices WHERE CONTAINS(deviceId, 'a')", "message-routing function;"),
        ("SELECT * FROM devices WHERE STARTS_WITH(deviceId, 'a')", "(write STARTSWITH)"),
        ("SELECT * FROM devices WHERE IS_NULL(tags.x)", "IS_NULL at line 1, column 29 is a"),
        ("SELECT * FROM devices WHERE LIKE(deviceId, 'a')", "is not a function"),
        ("SELECT * FROM devices WHERE IS_DEFINED()", "IS_DEFINED() at line 1, column 29: exp"),
        ("SELECT COUNT(*) FROM devices", "expected an expression or ), found '*'"),
        ("SELECT COUNT(version) FROM devices", "COUNT() at line 1, column 8: expected no"),
        ("SELECT * FROM devices WHERE COUNT() > 1", "COUNT() at line 1, column 29 is an aggr"),
        ("SELECT deviceId, COUNT() AS n FROM devices", "'deviceId' must be an aggregate"),
        ("SELECT status, COUNT() FROM devices GROUP BY version", "GROUP BY property version"),
        ("SELECT * FROM devices GROUP BY status", "GROUP BY needs a SELECT list"),
        ("SELECT deviceId, DeviceId FROM devices", "names 'deviceId' twice"),
        ("SELECT * FROM devices WHERE tags.group.x = 1", "write [[group]]"),
        ("SELECT * FROM devices WHERE x IN [tags.a]", "IN: expected a list of constants"),
        ("SELECT * FROM devices WHERE x = 'a\\n'", "escape \\n is not allowed"),
        ("SELECT TOP 1.5 * FROM devices", "TOP at line 1, column 12: expected a whole number"),
        ("SELECT * FROM devices WHERE x = 1e999", "number at line 1, column 33 is out of range"),
        ("SELECT * FROM devices WHERE " + "NOT " * MAX_NESTING + "x", "nest at most 64"),
        ("  ", "expected a query such as SELECT * FROM devices"),
        ("SELECT * FROM devices " + " " * MAX_QUERY_LENGTH, "expected at most 8192 characters"),
    ],
)
def test_bad_queries_say_where_and_what_was_expected(text: str, message: str) -> None:
    """Every refusal is a QueryError naming the field, the position and what was expected."""
    with pytest.raises(QueryError) as caught:
        parse(text)
    assert str(caught.value).startswith("query: ")
    assert message in str(caught.value)


def test_nesting_up_to_the_limit_parses_and_runs() -> None:
    """63 NOTs parse and evaluate; parentheses alone do not count as nesting."""
    deep = parse("SELECT * FROM devices WHERE " + "NOT " * (MAX_NESTING - 1) + "true")
    assert deep.matches(DOC_TWIN) is False
    wrapped = parse("SELECT * FROM devices WHERE " + "(" * 3000 + "true" + ")" * 3000)
    assert wrapped.matches(DOC_TWIN)


@pytest.mark.parametrize(
    "text",
    [
        "SELECT * FROM devices WHERE " + "(" * 4100,
        "SELECT * FROM devices WHERE " + "NOT " * 2040,
        "SELECT * FROM devices WHERE x = '" + "\\'" * 4000,
        "SELECT * FROM devices WHERE x IN [" + "1," * 4000 + "1]",
        "SELECT * FROM devices WHERE " + " OR ".join(["x = 1"] * 1000),
        "SELECT * FROM devices WHERE x = " + " + ".join(["0xFFFFFFFFFFFFF"] * 500),
        "SELECT * FROM devices WHERE " + "-" * 8000 + "1 = 1",
    ],
)
def test_largest_inputs_finish(text: str) -> None:
    """Pathological queries near the length limit parse (or are refused) and run at once."""
    started = time.monotonic()
    try:
        query = parse(text[:MAX_QUERY_LENGTH])
    except QueryError:
        pass
    else:
        query.matches(DOC_TWIN)
    assert time.monotonic() - started < 5  # a blow-up would take minutes, not seconds


# -- paging --------------------------------------------------------------------------------------


def test_pages_follow_device_ids_and_stop_at_top() -> None:
    """Pages of 2 in device id order with tokens; TOP 5 stops after 5 rows across pages."""
    documents = [twin(f"d{index:02}") for index in range(9)]
    assert [row["deviceId"] for row in run("SELECT * FROM devices", documents, size=2)] == [
        f"d{index:02}" for index in range(9)
    ]
    assert [len(page) for page in pages("SELECT * FROM devices", documents, size=3)] == [3, 3, 3]
    top = pages("SELECT TOP 5 deviceId FROM devices", documents, size=2)
    assert [len(page) for page in top] == [2, 2, 1]
    assert [row for page in top for row in page] == [
        {"deviceId": f"d{index:02}"} for index in range(5)
    ]
    assert run("SELECT TOP 0 * FROM devices", documents, size=2) == []
    groups = run("SELECT deviceId AS id, COUNT() AS n FROM devices GROUP BY deviceId", documents, 4)
    assert [row["id"] for row in groups] == [f"d{index:02}" for index in range(9)]


def test_last_page_has_no_token_and_a_full_last_page_has_none_either() -> None:
    """Exactly `size` matches answer one page without a continuation token."""
    documents = {f"d{index}": twin(f"d{index}") for index in range(4)}
    page = parse("SELECT * FROM devices").page(sorted(documents), documents.get, Cursor(), 4)
    assert len(page.items) == 4
    assert page.continuation is None


def test_a_device_deleted_between_pages_is_skipped_not_repeated() -> None:
    """The token remembers the last device id, so deletions do not shift the next page."""
    documents = {f"d{index}": twin(f"d{index}") for index in range(5)}
    query = parse("SELECT * FROM devices")
    first = query.page(sorted(documents), documents.get, Cursor(), 2)
    del documents["d1"], documents["d2"]
    second = query.page(
        sorted(documents), documents.get, decode_cursor(first.continuation, query), 2
    )
    assert [row["deviceId"] for row in first.items + second.items] == ["d0", "d1", "d3", "d4"]


@pytest.mark.parametrize("token", ["!!", "e30=", "bnVsbA==", "eyJxIjoxfQ==", "\u00e9"])
def test_forged_tokens_and_tokens_of_another_query_are_refused(token: str) -> None:
    """A token this hub did not issue for this very query is an x-ms-continuation error."""
    documents = {f"d{index}": twin(f"d{index}") for index in range(3)}
    issued = parse("SELECT * FROM devices").page(sorted(documents), documents.get, Cursor(), 1)
    assert issued.continuation is not None
    other = parse("SELECT deviceId FROM devices")
    for bad in (token, issued.continuation):
        with pytest.raises(QueryError, match=r"^x-ms-continuation: not a continuation token"):
            decode_cursor(bad, other)


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, 100), ("1", 1), ("2", 2), ("100", 100), ("1000", 100), ("0100", 100), ("9" * 40, 100)],
)
def test_page_size_defaults_to_and_is_capped_at_100(header: str | None, expected: int) -> None:
    """x-ms-max-item-count: absent is 100, larger than 100 is 100."""
    assert page_size(header) == expected


@pytest.mark.parametrize("header", ["0", "", "-1", "ten", "1.5", "\u0661"])
def test_page_size_must_be_a_positive_whole_number(header: str) -> None:
    """Anything else is an error naming the header."""
    with pytest.raises(QueryError, match=r"^x-ms-max-item-count: expected a whole number"):
        page_size(header)


# -- properties ----------------------------------------------------------------------------------


def _survives(text: str) -> Query | None:
    try:
        return parse(text)
    except QueryError:
        return None


@FUZZ
@given(text=st.text(max_size=200) | query_fragments() | broken_queries())
def test_any_text_parses_or_raises_only_query_error(text: str) -> None:
    """Arbitrary text is a Query or a QueryError, never another exception, within the deadline."""
    query = _survives(text)
    if query is not None:
        query.page(["myDeviceId"], {"myDeviceId": DOC_TWIN}.get, Cursor(), 10)


@FUZZ
@given(text=queries(), documents=st.lists(twin_documents(), max_size=6))
def test_generated_queries_parse_and_run(text: str, documents: list[dict[str, Any]]) -> None:
    """Every well-formed generated query parses and runs over generated twins."""
    by_id = {
        f"d{index}": {**document, "deviceId": f"d{index}"}
        for index, document in enumerate(documents)
    }
    query = parse(text)
    page = query.page(sorted(by_id), by_id.get, Cursor(), 3)
    assert len(page.items) <= 3
    json.dumps(page.items, allow_nan=False)


@FUZZ
@given(
    path=st.sampled_from(["deviceId", "version", "tags.site", "tags.floor", "tags.location"]),
    constants=st.lists(st.sampled_from(["'a'", "'US'", "2", "2.0", "true", "null"]), max_size=4),
    document=twin_documents(),
)
def test_in_and_nin_are_or_of_equalities_and_its_negation(
    path: str, constants: list[str], document: dict[str, Any]
) -> None:
    """`p IN [..]`, `p = a OR p = b` and the same ORs kept apart by `AND true` agree, and NIN
    is their NOT, for every twin."""
    listed = f"[{', '.join(constants)}]"
    kept_apart = " OR ".join(f"({path} = {constant} AND true)" for constant in constants)
    chained = " OR ".join(f"{path} = {constant}" for constant in constants)
    if not constants:
        kept_apart = chained = "false"
    expected = where(kept_apart, document)
    assert where(f"{path} IN {listed}", document) is expected
    assert where(chained, document) is expected
    assert where(f"{path} NIN {listed}", document) is where(f"NOT ({kept_apart})", document)


@FUZZ
@given(condition=query_conditions(), documents=st.lists(twin_documents(), max_size=8))
def test_count_agrees_with_rows_and_not_never_overlaps(
    condition: str, documents: list[dict[str, Any]]
) -> None:
    """COUNT() WHERE c is the number of twins SELECT * WHERE c returns; c and NOT (c) never
    both hold for one twin."""
    by_id = {
        f"d{index}": {**document, "deviceId": f"d{index}"}
        for index, document in enumerate(documents)
    }
    rows = run(f"SELECT * FROM devices WHERE {condition}", list(by_id.values()), size=2)
    (count,) = run(f"SELECT COUNT() AS n FROM devices WHERE {condition}", list(by_id.values()))
    assert count == {"n": len(rows)}
    negated = parse(f"SELECT * FROM devices WHERE NOT ({condition})")
    for document in by_id.values():
        assert not (where(condition, document) and negated.matches(document))
