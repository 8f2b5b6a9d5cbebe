"""`parse_config`: a TOML mapping (as `tomllib` returns it) validated into an `EmulatorConfig`. Pure.

Defaults: `[dps]` id scope `0ne00000001`, host `global.azure-devices-provisioning.net`;
`allocation = "hashed"`, `hubs` = every configured hub, `reprovision = "migrate"`,
`enabled = true`, no initial twin. `custom` needs `webhook_url`; `static` needs exactly one hub.
A hub's service policy is `iothubowner` by default; without `shared_access_key` the emulator
generates one and keeps it in `<state-dir>/hubs.json`. Without `[events] url` lifecycle events go
to the local Functions host when it runs, and nowhere otherwise. Connection events are IoT Hub's
60-second snapshots unless `[events] connection_events = "immediate"` (`snapshot_interval` sets
the period).
`[quotas]` defaults to Azure's documented DPS and IoT Hub S1 limits (`quotas.limits`).

`ConfigError` names the source, the section and the field of the first problem, never a key.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import urlsplit

from emulator.config.model import DEFAULT_POLICY_NAME, EmulatorConfig, ServicePolicy
from emulator.dps.enrollments import (
    DEFAULT_DPS_HOST,
    DEFAULT_ID_SCOPE,
    Allocation,
    DpsSettings,
    EnrollmentGroup,
    IndividualEnrollment,
    Reprovision,
)
from emulator.faults.spec import FaultError, FaultSpec, parse_fault_table
from emulator.hub.presence import ConnectionEvents, PresencePolicy
from emulator.hub.twin import InitialTwin, TwinError
from emulator.quotas.limits import QuotaError, QuotaSettings, parse_quotas
from sas.errors import KeyFormatError
from sas.keys import decode_key

log = logging.getLogger(__name__)


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_ID_SCOPE = re.compile(r"[A-Za-z0-9]{1,64}")
_ENROLLMENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_DEVICE_ID = re.compile(r"[A-Za-z0-9\-.%_*?!(),=@$':]{1,128}")
KEY_FIELDS = ("primary_key", "secondary_key")
_POLICY_FIELDS = ("shared_access_key_name", "shared_access_key")
_POLICY_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
SECTIONS = ("enrollment_groups", "individual_enrollments")
MAX_SNAPSHOT_INTERVAL = 3600
E = TypeVar("E", bound=StrEnum)


class ConfigError(ValueError):
    """The configuration is invalid; the message names where and what was expected."""

    def __init__(self, source: str, location: str, message: str) -> None:
        super().__init__(f"{source}: {location}: {message}")
        self.source = source
        self.location = location
        self.message = message


def parse_config(data: Mapping[str, Any], *, source: str) -> EmulatorConfig:
    """Validate a parsed TOML mapping into an EmulatorConfig, or raise ConfigError."""
    reader = _Reader(source)
    reader.only_fields("top level", data, ("dps", "hubs", "events", "faults", "quotas", *SECTIONS))
    dps = reader.dps(data.get("dps", {}))
    hubs = reader.hubs(data.get("hubs"))
    policies = reader.service_policies(data.get("hubs"), hubs)
    events_url = reader.events_url(data.get("events", {}))
    presence = reader.presence(data.get("events", {}))
    groups = tuple(
        reader.group(where, entry, hubs)
        for where, entry in reader.array_of_tables(data, "enrollment_groups")
    )
    individuals = tuple(
        reader.individual(where, entry, hubs)
        for where, entry in reader.array_of_tables(data, "individual_enrollments")
    )
    reader.unique("enrollment_groups", [group.id for group in groups], "id")
    reader.unique(
        "individual_enrollments",
        [individual.registration_id for individual in individuals],
        "registration_id",
    )
    return EmulatorConfig(
        source=source,
        dps=dps,
        hubs=hubs,
        enrollment_groups=groups,
        individual_enrollments=individuals,
        service_policies=policies,
        events_url=events_url,
        presence=presence,
        faults=_faults(data.get("faults", {}), hubs, source),
        quotas=_quotas(data.get("quotas", {}), source),
    )


@dataclass(frozen=True)
class _Reader:
    """Field readers that know the source name for error messages."""

    source: str

    def fail(self, location: str, message: str) -> ConfigError:
        return ConfigError(self.source, location, message)

    def only_fields(self, where: str, table: Mapping[str, Any], allowed: Sequence[str]) -> None:
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise self.fail(
                where, f"unknown field {unknown[0]!r}; expected one of {', '.join(allowed)}"
            )

    def table(self, where: str, value: object) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "expected a table")
        return value

    def string(
        self, where: str, table: Mapping[str, Any], name: str, default: str | None = None
    ) -> str:
        value = table.get(name, default)
        if not isinstance(value, str) or not value:
            raise self.fail(f"{where}: {name}", "expected a non-empty string")
        return value

    def boolean(self, where: str, table: Mapping[str, Any], name: str, default: bool) -> bool:
        value = table.get(name, default)
        if not isinstance(value, bool):
            raise self.fail(f"{where}: {name}", "expected true or false")
        return value

    def host(self, where: str, value: str) -> str:
        labels = value.split(".")
        if len(value) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
            raise self.fail(where, "expected a DNS host name such as toasters.azure-devices.net")
        return value

    def dps(self, value: object) -> DpsSettings:
        table = self.table("[dps]", value)
        self.only_fields("[dps]", table, ("id_scope", "host"))
        id_scope = self.string("[dps]", table, "id_scope", DEFAULT_ID_SCOPE)
        if not _ID_SCOPE.fullmatch(id_scope):
            raise self.fail("[dps]: id_scope", "expected letters and digits, like 0ne00000001")
        host = self.host("[dps]: host", self.string("[dps]", table, "host", DEFAULT_DPS_HOST))
        return DpsSettings(id_scope=id_scope, host=host)

    def hubs(self, value: object) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail("[[hubs]]", "expected at least one [[hubs]] table with a name")
        names: list[str] = []
        for index, entry in enumerate(value, start=1):
            where = f"[[hubs]] #{index}"
            table = self.table(where, entry)
            self.only_fields(where, table, ("name", *_POLICY_FIELDS))
            names.append(self.host(f"{where}: name", self.string(where, table, "name")))
        self.unique("[[hubs]]", [name.lower() for name in names], "name")
        return tuple(names)

    def service_policies(self, value: object, hubs: tuple[str, ...]) -> tuple[ServicePolicy, ...]:
        policies: list[ServicePolicy] = []
        entries = value if isinstance(value, list) else []
        for index, (hub, table) in enumerate(zip(hubs, entries, strict=True), start=1):
            where = f"[[hubs]] #{index} ({hub})"
            key_name = self.string(where, table, "shared_access_key_name", DEFAULT_POLICY_NAME)
            if not _POLICY_NAME.fullmatch(key_name):
                raise self.fail(
                    f"{where}: shared_access_key_name", "expected letters, digits and - . _"
                )
            key = (
                self.key(where, table, "shared_access_key")
                if "shared_access_key" in table
                else None
            )
            policies.append(ServicePolicy(hub=hub, key_name=key_name, key=key))
        return tuple(policies)

    def events_url(self, value: object) -> str | None:
        table = self.table("[events]", value)
        self.only_fields("[events]", table, ("url", "connection_events", "snapshot_interval"))
        if "url" not in table:
            return None
        url = table["url"]
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise self.fail("[events]: url", "expected an http:// or https:// URL")
        return url

    def presence(self, value: object) -> PresencePolicy:
        table = self.table("[events]", value)
        mode = self.choice(
            "[events]", table, "connection_events", ConnectionEvents, ConnectionEvents.SNAPSHOT
        )
        interval = table.get("snapshot_interval", PresencePolicy().interval)
        if (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not 0 < interval <= MAX_SNAPSHOT_INTERVAL
        ):
            raise self.fail(
                "[events]: snapshot_interval",
                f"expected seconds between 0 and {MAX_SNAPSHOT_INTERVAL} (IoT Hub uses 60)",
            )
        return PresencePolicy(mode=mode, interval=float(interval))

    def array_of_tables(
        self, data: Mapping[str, Any], section: str
    ) -> Iterator[tuple[str, Mapping[str, Any]]]:
        entries = data.get(section, [])
        if not isinstance(entries, list):
            raise self.fail(f"[[{section}]]", "expected an array of tables")
        for index, entry in enumerate(entries, start=1):
            where = f"[[{section}]] #{index}"
            yield where, self.table(where, entry)

    def unique(self, where: str, values: Sequence[str], name: str) -> None:
        seen: set[str] = set()
        for value in values:
            if value.lower() in seen:
                raise self.fail(where, f"{name} {value!r} appears more than once")
            seen.add(value.lower())

    def group(self, where: str, table: Mapping[str, Any], hubs: tuple[str, ...]) -> EnrollmentGroup:
        self.only_fields(where, table, ("id", *_COMMON_FIELDS))
        group_id = self.string(where, table, "id")
        if not _ENROLLMENT_ID.fullmatch(group_id):
            raise self.fail(f"{where}: id", "expected letters, digits and - . _ : (max 128)")
        return EnrollmentGroup(id=group_id, **self.common(f"{where} ({group_id})", table, hubs))

    def individual(
        self, where: str, table: Mapping[str, Any], hubs: tuple[str, ...]
    ) -> IndividualEnrollment:
        self.only_fields(where, table, ("registration_id", "device_id", *_COMMON_FIELDS))
        registration_id = self.string(where, table, "registration_id")
        if not _ENROLLMENT_ID.fullmatch(registration_id):
            raise self.fail(
                f"{where}: registration_id", "expected letters, digits and - . _ : (max 128)"
            )
        device_id = self.string(where, table, "device_id", registration_id)
        if not _DEVICE_ID.fullmatch(device_id):
            raise self.fail(f"{where}: device_id", "expected an IoT Hub device id (max 128)")
        return IndividualEnrollment(
            registration_id=registration_id,
            device_id=device_id,
            **self.common(f"{where} ({registration_id})", table, hubs),
        )

    def common(
        self, where: str, table: Mapping[str, Any], all_hubs: tuple[str, ...]
    ) -> dict[str, Any]:
        keys = {name: self.key(where, table, name) for name in KEY_FIELDS}
        allocation = self.choice(where, table, "allocation", Allocation, Allocation.HASHED)
        reprovision = self.choice(where, table, "reprovision", Reprovision, Reprovision.MIGRATE)
        hubs = self.enrollment_hubs(where, table.get("hubs"), all_hubs)
        webhook_url = table.get("webhook_url")
        if allocation is Allocation.CUSTOM:
            webhook_url = self.webhook_url(where, webhook_url)
        elif webhook_url is not None:
            raise self.fail(f"{where}: webhook_url", 'expected only with allocation = "custom"')
        if allocation is Allocation.STATIC and len(hubs) != 1:
            raise self.fail(f"{where}: hubs", 'expected exactly one hub with allocation = "static"')
        return {
            **keys,
            "allocation": allocation,
            "webhook_url": webhook_url,
            "hubs": hubs,
            "reprovision": reprovision,
            "initial_twin": self.initial_twin(where, table.get("initial_twin")),
            "enabled": self.boolean(where, table, "enabled", True),
        }

    def key(self, where: str, table: Mapping[str, Any], name: str) -> str:
        value = table.get(name)
        if not isinstance(value, str):
            raise self.fail(f"{where}: {name}", "expected a base64 key string")
        try:
            decode_key(value, name=name)
        except KeyFormatError as error:
            raise self.fail(f"{where}: {name}", str(error).partition(": ")[2]) from None
        return value

    def choice(
        self, where: str, table: Mapping[str, Any], name: str, kind: type[E], default: E
    ) -> E:
        value = table.get(name, default.value)
        try:
            return kind(value)
        except ValueError:
            options = " | ".join(member.value for member in kind)
            raise self.fail(f"{where}: {name}", f"expected {options}") from None

    def enrollment_hubs(
        self, where: str, value: object, all_hubs: tuple[str, ...]
    ) -> tuple[str, ...]:
        if value is None:
            return all_hubs
        if not isinstance(value, list) or not all(isinstance(hub, str) for hub in value):
            raise self.fail(f"{where}: hubs", "expected a list of hub names")
        by_name = {hub.lower(): hub for hub in all_hubs}
        chosen: list[str] = []
        for hub in value:
            if hub.lower() not in by_name:
                raise self.fail(f"{where}: hubs", f"{hub!r} is not one of the [[hubs]] names")
            chosen.append(by_name[hub.lower()])
        return tuple(chosen) or all_hubs

    def webhook_url(self, where: str, value: object) -> str:
        message = 'expected an http:// or https:// URL with allocation = "custom"'
        if not isinstance(value, str):
            raise self.fail(f"{where}: webhook_url", message)
        try:
            parts = urlsplit(value)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
            parts.port  # noqa: B018 -- raises ValueError for a bad port
        except ValueError:
            valid = False
        if not valid:
            raise self.fail(f"{where}: webhook_url", message)
        return value

    def initial_twin(self, where: str, value: object) -> InitialTwin | None:
        if value is None:
            return None
        table = self.table(f"{where}: initial_twin", value)
        self.only_fields(f"{where}: initial_twin", table, ("tags", "desired"))
        try:
            return InitialTwin.from_json(
                {"tags": table.get("tags", {}), "properties": {"desired": table.get("desired", {})}}
            )
        except TwinError as error:
            raise self.fail(f"{where}: initial_twin", str(error)) from None


_COMMON_FIELDS = (
    "primary_key",
    "secondary_key",
    "allocation",
    "webhook_url",
    "hubs",
    "reprovision",
    "initial_twin",
    "enabled",
)


def _faults(value: object, hubs: tuple[str, ...], source: str) -> dict[str, FaultSpec]:
    try:
        return parse_fault_table(value, hubs=hubs, source=source)
    except FaultError as error:
        location, _, message = str(error).removeprefix(f"{source}: ").partition(": ")
        raise ConfigError(source, location, message) from None


def _quotas(value: object, source: str) -> QuotaSettings:
    try:
        return parse_quotas(value)
    except QuotaError as error:
        raise ConfigError(source, error.where, error.message) from None


def parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(source, "file", f"expected TOML ({error})") from None
