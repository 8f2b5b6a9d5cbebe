"""Tests for emulator.hub.twin: the pure device twin document."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.hub.twin import InitialTwin, TwinDocument, TwinError, format_timestamp

NOW = 1_700_000_000.123
LATER = NOW + 60

property_names = st.text(alphabet="abcdefgXYZ019_-", min_size=1, max_size=6)
leaves = st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=10)
patches = st.recursive(
    st.dictionaries(property_names, leaves, max_size=4),
    lambda inner: st.dictionaries(property_names, leaves | inner, max_size=4),
    max_leaves=12,
)


def test_new_twin_has_the_documented_versions_and_etag() -> None:
    """A fresh twin has desired/reported $version 1, version 2 and etag AAAAAAAAAAE=."""
    twin = TwinDocument.new(None, now=NOW)
    assert twin.device_view() == {"desired": {"$version": 1}, "reported": {"$version": 1}}
    assert (twin.version, twin.etag) == (2, "AAAAAAAAAAE=")


def test_initial_twin_seeds_tags_and_desired() -> None:
    """The initial twin's tags and desired properties are in the new document."""
    initial = InitialTwin.from_json(
        {"tags": {"deviceType": "toaster"}, "properties": {"desired": {"state": "ready"}}}
    )
    twin = TwinDocument.new(initial, now=NOW)
    assert twin.tags == {"deviceType": "toaster"}
    assert twin.device_view()["desired"] == {"state": "ready", "$version": 1}


def test_reported_patch_merges_deletes_and_counts_versions() -> None:
    """A reported PATCH merges, null deletes, and the reported $version goes up by one."""
    twin = TwinDocument.new(None, now=NOW).patch_reported(
        {"temperature": 32, "fw": {"a": 1, "b": 2}}, now=NOW
    )
    twin = twin.patch_reported({"fw": {"a": None}, "temperature": None}, now=LATER)
    assert twin.device_view()["reported"] == {"fw": {"b": 2}, "$version": 3}
    assert twin.desired_version == 1


def test_documented_twin_after_one_reported_patch() -> None:
    """After one reported patch the GET body matches the documented real twin."""
    twin = TwinDocument.new(None, now=NOW).patch_reported({"temperature": 32}, now=NOW)
    assert twin.device_view() == {
        "desired": {"$version": 1},
        "reported": {"temperature": 32, "$version": 2},
    }


def test_desired_patch_moves_version_etag_and_notification() -> None:
    """A desired patch bumps $version and etag, and the push body carries the new $version."""
    before = TwinDocument.new(None, now=NOW)
    after = before.patch_desired({"interval": 5}, now=LATER)
    assert after.desired_version == 2
    assert after.etag != before.etag
    assert after.desired_notification({"interval": 5}) == {"interval": 5, "$version": 2}


def test_metadata_records_last_updated_at_every_level() -> None:
    """$metadata mirrors written nodes with $lastUpdated and, for desired, $lastUpdatedVersion."""
    twin = TwinDocument.new(None, now=NOW).patch_desired({"cfg": {"rate": 5}}, now=LATER)
    desired = twin.service_view("dev-1")["properties"]["desired"]
    stamp = format_timestamp(LATER)
    assert desired["$metadata"]["$lastUpdated"] == stamp
    assert desired["$metadata"]["cfg"]["rate"] == {"$lastUpdated": stamp, "$lastUpdatedVersion": 2}
    assert desired["$version"] == 2


def test_timestamp_format_has_milliseconds_and_z() -> None:
    """Metadata timestamps look like 2023-11-14T22:13:20.123Z."""
    assert format_timestamp(NOW) == "2023-11-14T22:13:20.123Z"


def test_service_view_has_the_rest_shape() -> None:
    """The service view carries deviceId, etag, version, tags and both property sections."""
    twin = TwinDocument.new(InitialTwin(tags={"site": "a"}), now=NOW).patch_tags(
        {"site": None, "room": "1"}, now=LATER
    )
    view = twin.service_view("dev-1")
    assert (view["deviceId"], view["tags"], view["version"]) == ("dev-1", {"room": "1"}, 3)
    assert set(view["properties"]) == {"desired", "reported"}


def test_replace_desired_drops_old_properties() -> None:
    """Replacing desired keeps only the new properties and bumps $version."""
    twin = TwinDocument.new(InitialTwin(desired={"a": 1}), now=NOW)
    twin = twin.replace_desired({"b": 2}, now=LATER)
    assert twin.device_view()["desired"] == {"b": 2, "$version": 2}


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ([1, 2], "reported"),
        ({"a.b": 1}, "reported"),
        ({"$version": 3}, "reported"),
        ({"a b": 1}, "reported"),
        ({"": 1}, "reported"),
        ({"big": 2**60}, "reported.big"),
        ({"s": "x" * 5000}, "reported.s"),
        ({"n": float("nan")}, "reported.n"),
    ],
)
def test_invalid_reported_patches_are_rejected_with_the_field(patch: object, field: str) -> None:
    """Patches IoT Hub would reject raise TwinError naming the field, status 400."""
    with pytest.raises(TwinError) as caught:
        TwinDocument.new(None, now=NOW).patch_reported(patch, now=NOW)
    assert caught.value.field == field
    assert caught.value.status == 400


def test_nesting_deeper_than_ten_is_rejected() -> None:
    """Objects nested more than ten deep are rejected."""
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(10):
        deep = {"n": deep}
    with pytest.raises(TwinError, match="nested"):
        TwinDocument.new(None, now=NOW).patch_reported(deep, now=NOW)


def test_oversized_reported_section_is_rejected() -> None:
    """Reported properties larger than 32 KB are rejected."""
    patch = {f"k{i}": "x" * 4000 for i in range(9)}
    with pytest.raises(TwinError, match="32768"):
        TwinDocument.new(None, now=NOW).patch_reported(patch, now=NOW)


def test_initial_twin_rejects_non_objects() -> None:
    """An initialTwin whose desired section is not an object names that field."""
    with pytest.raises(TwinError, match=r"initialTwin\.properties\.desired"):
        InitialTwin.from_json({"properties": {"desired": [1]}})


def test_initial_twin_round_trips_the_wire_form() -> None:
    """to_json gives back the DPS wire form from_json read."""
    wire = {"tags": {"t": 1}, "properties": {"desired": {"d": {"e": "f"}}}}
    assert InitialTwin.from_json(wire).to_json() == wire


@given(patches, patches)
def test_reported_patches_never_leave_nulls_and_never_mutate(first: Any, second: Any) -> None:
    """Merging never stores null, never changes earlier documents, and $version counts patches."""
    original = TwinDocument.new(None, now=NOW)
    once = original.patch_reported(first, now=NOW)
    snapshot = json.dumps(once.device_view(), sort_keys=True)
    twice = once.patch_reported(second, now=LATER)
    assert json.dumps(once.device_view(), sort_keys=True) == snapshot
    assert original.reported == {}
    assert "null" not in json.dumps(twice.reported)
    assert twice.reported_version == 3


@given(patches)
def test_patch_then_delete_every_key_empties_the_section(patch: Any) -> None:
    """Deleting every top-level key written by a patch leaves reported empty."""
    twin = TwinDocument.new(None, now=NOW).patch_reported(patch, now=NOW)
    twin = twin.patch_reported(dict.fromkeys(patch), now=LATER)
    assert twin.reported == {}
