"""A device twin as IoT Hub keeps it: tags, desired and reported properties, versions, metadata.

Pure values: a `TwinDocument` never changes; every operation returns a new one. The caller passes
`now` (seconds since the epoch). Nothing here does I/O or reads a clock.

Rules (docs/protocol/hub-mqtt.md §5, hub-service-rest.md §7):

- A new twin has desired and reported `$version` 1, twin `version` 2 and etag `AAAAAAAAAAE=`.
- A patch merges into its section; a property set to `null` is removed; an object replaces a
  leaf and vice versa. Each patch to a section adds one to that section's `$version` (only ever
  increments) and to the twin `version`; tags and desired changes also move the etag.
- `$metadata` mirrors every object level and leaf with `$lastUpdated`
  (`YYYY-MM-DDTHH:MM:SS.mmmZ`); desired metadata also carries `$lastUpdatedVersion`. A node's
  metadata is refreshed when it, or anything under it, is written.
- Property names must be non-empty, at most 1 KB of UTF-8, without control characters, `.`, `$`
  or space; nesting at most 10 deep; integers within ±2**52; strings at most 4 KB; tags at most
  8 KB and desired/reported at most 32 KB each, as compact JSON.
- The device sees `{"desired": {..., "$version": N}, "reported": {..., "$version": M}}` (no tags, no
  metadata); a desired push is the patch plus `"$version"`.
- `modelId` is the IoT Plug and Play model the device announced when it last connected with one
  (`model-id` in its MQTT username; "" until then). Only the device sets it: no patch or replace
  touches it, and it moves with the twin (docs/protocol/hub-mqtt.md §1).

Errors:

    TwinError            a patch or initial twin breaks the rules above; `status` is the HTTP /
                         twin-topic status to answer (400), the message names the field
"""

from __future__ import annotations

import base64
import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["InitialTwin", "TwinDocument", "TwinError", "format_timestamp"]

JsonObject = dict[str, Any]

MAX_DEPTH = 10
MAX_KEY_BYTES = 1024
MAX_STRING_BYTES = 4 * 1024
MAX_TAGS_BYTES = 8 * 1024
MAX_PROPERTIES_BYTES = 32 * 1024
MAX_SAFE_INTEGER = 4503599627370495
MIN_SAFE_INTEGER = -4503599627370496
_FORBIDDEN_KEY_CHARACTERS = frozenset(".$ ")


class TwinError(ValueError):
    """A twin patch or initial twin that IoT Hub would reject; answer with `status`."""

    status = 400

    def __init__(self, field: str, expected: str) -> None:
        super().__init__(f"{field}: expected {expected}")
        self.field = field
        self.expected = expected


def format_timestamp(now: float) -> str:
    """The twin metadata timestamp form: UTC, milliseconds, `Z`."""
    moment = datetime.fromtimestamp(now, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class InitialTwin:
    """The twin a device starts with: from an enrollment, or from the webhook's `initialTwin`."""

    tags: Mapping[str, Any] = field(default_factory=dict)
    desired: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_section("initialTwin.tags", self.tags, MAX_TAGS_BYTES)
        _check_section("initialTwin.properties.desired", self.desired, MAX_PROPERTIES_BYTES)

    @classmethod
    def from_json(cls, value: object, *, where: str = "initialTwin") -> InitialTwin:
        """Parse the DPS wire form `{"tags": {...}, "properties": {"desired": {...}}}`."""
        if not isinstance(value, dict):
            raise TwinError(where, "an object")
        tags = value.get("tags") or {}
        properties = value.get("properties") or {}
        if not isinstance(tags, dict):
            raise TwinError(f"{where}.tags", "an object")
        if not isinstance(properties, dict):
            raise TwinError(f"{where}.properties", "an object")
        desired = properties.get("desired") or {}
        if not isinstance(desired, dict):
            raise TwinError(f"{where}.properties.desired", "an object")
        return cls(tags=_without_nulls(tags), desired=_without_nulls(desired))

    def to_json(self) -> JsonObject:
        """The DPS wire form, as an enrollment record carries it."""
        return {"tags": dict(self.tags), "properties": {"desired": dict(self.desired)}}


@dataclass(frozen=True, kw_only=True)
class TwinDocument:
    """One device twin. Treat the mappings as read-only; operations return new documents."""

    tags: Mapping[str, Any]
    desired: Mapping[str, Any]
    reported: Mapping[str, Any]
    desired_version: int
    reported_version: int
    version: int
    etag_counter: int
    desired_metadata: Mapping[str, Any]
    reported_metadata: Mapping[str, Any]
    tags_updated: str
    model_id: str = ""

    @classmethod
    def new(cls, initial: InitialTwin | None, *, now: float) -> TwinDocument:
        """A fresh twin, optionally seeded with an initial twin's tags and desired properties."""
        initial = initial or InitialTwin()
        stamp = format_timestamp(now)
        desired = copy.deepcopy(dict(initial.desired))
        return cls(
            tags=copy.deepcopy(dict(initial.tags)),
            desired=desired,
            reported={},
            desired_version=1,
            reported_version=1,
            version=2,
            etag_counter=1,
            desired_metadata=_fresh_metadata(desired, stamp, version=1),
            reported_metadata=_fresh_metadata({}, stamp, version=None),
            tags_updated=stamp,
        )

    @property
    def etag(self) -> str:
        """The twin etag: base64 of an 8-byte big-endian counter (`AAAAAAAAAAE=` for 1)."""
        return base64.b64encode(self.etag_counter.to_bytes(8, "big")).decode("ascii")

    def with_model_id(self, model_id: str) -> TwinDocument:
        """The twin with the model its device announced at CONNECT."""
        return _replace(self, model_id=model_id)

    def patch_reported(self, patch: object, *, now: float) -> TwinDocument:
        """Apply a device's reported-properties PATCH; the new `$version` is `reported_version`."""
        checked = _check_patch("reported", patch)
        reported = _merge(self.reported, checked)
        _check_section("reported", reported, MAX_PROPERTIES_BYTES)
        version = self.reported_version + 1
        return _replace(
            self,
            reported=reported,
            reported_version=version,
            version=self.version + 1,
            reported_metadata=_touch_metadata(
                self.reported_metadata, checked, format_timestamp(now), version=None
            ),
        )

    def patch_desired(self, patch: object, *, now: float) -> TwinDocument:
        """Apply a service-side desired-properties PATCH (null deletes)."""
        checked = _check_patch("properties.desired", patch)
        desired = _merge(self.desired, checked)
        _check_section("properties.desired", desired, MAX_PROPERTIES_BYTES)
        version = self.desired_version + 1
        return _replace(
            self,
            desired=desired,
            desired_version=version,
            version=self.version + 1,
            etag_counter=self.etag_counter + 1,
            desired_metadata=_touch_metadata(
                self.desired_metadata, checked, format_timestamp(now), version=version
            ),
        )

    def patch_tags(self, patch: object, *, now: float) -> TwinDocument:
        """Apply a service-side tags PATCH (null deletes)."""
        checked = _check_patch("tags", patch)
        tags = _merge(self.tags, checked)
        _check_section("tags", tags, MAX_TAGS_BYTES)
        return _replace(
            self,
            tags=tags,
            version=self.version + 1,
            etag_counter=self.etag_counter + 1,
            tags_updated=format_timestamp(now),
        )

    def replace_tags(self, tags: object, *, now: float) -> TwinDocument:
        """Replace all tags (service PUT of a twin)."""
        checked = _without_nulls(_check_patch("tags", tags))
        _check_section("tags", checked, MAX_TAGS_BYTES)
        return _replace(
            self,
            tags=checked,
            version=self.version + 1,
            etag_counter=self.etag_counter + 1,
            tags_updated=format_timestamp(now),
        )

    def replace_desired(self, desired: object, *, now: float) -> TwinDocument:
        """Replace the whole desired section (service PUT); a new `$version` follows."""
        checked = _check_patch("properties.desired", desired)
        whole = _without_nulls(checked)
        version = self.desired_version + 1
        return _replace(
            self,
            desired=whole,
            desired_version=version,
            version=self.version + 1,
            etag_counter=self.etag_counter + 1,
            desired_metadata=_fresh_metadata(whole, format_timestamp(now), version=version),
        )

    def device_view(self) -> JsonObject:
        """The body of a twin GET answered to the device (no tags, no metadata)."""
        return {
            "desired": {**copy.deepcopy(dict(self.desired)), "$version": self.desired_version},
            "reported": {**copy.deepcopy(dict(self.reported)), "$version": self.reported_version},
        }

    def desired_notification(self, patch: Mapping[str, Any]) -> JsonObject:
        """The body pushed on `$iothub/twin/PATCH/properties/desired/?$version=N` after a patch."""
        return {**copy.deepcopy(dict(patch)), "$version": self.desired_version}

    def service_view(self, device_id: str) -> JsonObject:
        """The twin as the service REST API returns it (hub-service-rest.md §7)."""
        return {
            "deviceId": device_id,
            "modelId": self.model_id,
            "etag": self.etag,
            "version": self.version,
            "tags": copy.deepcopy(dict(self.tags)),
            "properties": {
                "desired": {
                    **copy.deepcopy(dict(self.desired)),
                    "$metadata": copy.deepcopy(dict(self.desired_metadata)),
                    "$version": self.desired_version,
                },
                "reported": {
                    **copy.deepcopy(dict(self.reported)),
                    "$metadata": copy.deepcopy(dict(self.reported_metadata)),
                    "$version": self.reported_version,
                },
            },
        }


def _replace(document: TwinDocument, **changes: Any) -> TwinDocument:
    values = {name: getattr(document, name) for name in document.__dataclass_fields__}
    values.update(changes)
    return TwinDocument(**values)


def _merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> JsonObject:
    """JSON merge patch (RFC 7386) without touching either argument."""
    merged = copy.deepcopy(dict(base))
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict):
            current = merged.get(key)
            merged[key] = _merge(current if isinstance(current, dict) else {}, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _without_nulls(value: Mapping[str, Any]) -> JsonObject:
    return _merge({}, value)


def _fresh_metadata(section: Mapping[str, Any], stamp: str, *, version: int | None) -> JsonObject:
    node: JsonObject = {"$lastUpdated": stamp}
    if version is not None:
        node["$lastUpdatedVersion"] = version
    for key, value in section.items():
        if isinstance(value, dict):
            node[key] = _fresh_metadata(value, stamp, version=version)
        else:
            node[key] = _leaf_metadata(stamp, version)
    return node


def _leaf_metadata(stamp: str, version: int | None) -> JsonObject:
    leaf: JsonObject = {"$lastUpdated": stamp}
    if version is not None:
        leaf["$lastUpdatedVersion"] = version
    return leaf


def _touch_metadata(
    metadata: Mapping[str, Any], patch: Mapping[str, Any], stamp: str, *, version: int | None
) -> JsonObject:
    node = copy.deepcopy(dict(metadata))
    node["$lastUpdated"] = stamp
    if version is not None:
        node["$lastUpdatedVersion"] = version
    for key, value in patch.items():
        if value is None:
            node.pop(key, None)
        elif isinstance(value, dict):
            current = node.get(key)
            child = current if isinstance(current, dict) else {}
            node[key] = _touch_metadata(child, value, stamp, version=version)
        else:
            node[key] = _leaf_metadata(stamp, version)
    return node


def _check_patch(where: str, patch: object) -> JsonObject:
    if not isinstance(patch, dict):
        raise TwinError(where, "a JSON object")
    _check_object(where, patch, depth=1)
    return patch


def _check_section(where: str, section: Mapping[str, Any], limit: int) -> None:
    _check_object(where, section, depth=1)
    size = len(json.dumps(section, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > limit:
        raise TwinError(where, f"at most {limit} bytes of JSON (got {size})")


def _check_object(where: str, value: Mapping[str, Any], *, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise TwinError(where, f"objects nested at most {MAX_DEPTH} deep")
    for key, child in value.items():
        _check_key(where, key)
        _check_value(f"{where}.{key}", child, depth=depth)


def _check_key(where: str, key: object) -> None:
    if not isinstance(key, str) or not key:
        raise TwinError(where, "non-empty property names")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise TwinError(where, f"property names of at most {MAX_KEY_BYTES} bytes")
    if any(ch in _FORBIDDEN_KEY_CHARACTERS or ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise TwinError(where, "property names without '.', '$', space or control characters")


def _check_value(where: str, value: object, *, depth: int) -> None:
    if isinstance(value, dict):
        _check_object(where, value, depth=depth + 1)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not MIN_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise TwinError(where, "an integer within [-2**52, 2**52 - 1]")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise TwinError(where, "a finite number")
    elif isinstance(value, str):
        if len(value.encode("utf-8")) > MAX_STRING_BYTES:
            raise TwinError(where, f"a string of at most {MAX_STRING_BYTES} bytes")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_value(f"{where}[{index}]", item, depth=depth + 1)
    else:
        raise TwinError(where, "a JSON value")
