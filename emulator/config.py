"""The emulator's configuration: a TOML file parsed once into frozen values.

`parse_config(data, source=...)` is pure: it validates a mapping (as `tomllib` returns it) and
names the file, section and field of the first problem. `load_config(path)` is the thin shell: it
reads the file, generates the enrollment keys the file leaves out, writes them back atomically
(the file then holds keys, so it is written 0600) and parses the result. `write_enrollment_key`
puts an operator's regenerated key into the file the same way, so the file always holds the keys
DPS uses and the factory derives device keys from.

Shape (every field is documented in the README):

    [dps]                     id_scope, host
    [[hubs]]                  name (a host name, kept verbatim: devices use it as TCP host),
                              shared_access_key_name, shared_access_key (service API policy)
    [events]                  url (where lifecycle events are posted)
    [faults.dps], [faults."<hub>"]  fault injection (fields in `emulator.faults`)
    [[enrollment_groups]]     id, primary_key, secondary_key, allocation, webhook_url, hubs,
                              reprovision, initial_twin {tags, desired}, enabled
    [[individual_enrollments]] registration_id, device_id, and the same fields as a group

Defaults: `[dps]` id scope `0ne00000001`, host `global.azure-devices-provisioning.net`;
`allocation = "hashed"`, `hubs` = every configured hub, `reprovision = "migrate"`,
`enabled = true`, no initial twin. `custom` needs `webhook_url`; `static` needs exactly one hub.
A hub's service policy is `iothubowner` by default; without `shared_access_key` the emulator
generates one and keeps it in `<state-dir>/hubs.json`. Without `[events] url` lifecycle events go
to the local Functions host when it runs, and nowhere otherwise.

Errors:

    ConfigError        a file that cannot be read or a value that breaks the rules above; the
                       message names the source, the section and the field, never a key value
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from devtools.files import write_private
from devtools.keys import new_key
from emulator.faults import FaultError, FaultSpec, parse_fault_table
from emulator.twin import InitialTwin, TwinError
from sas.errors import KeyFormatError
from sas.keys import decode_key

__all__ = [
    "Allocation",
    "ConfigError",
    "DpsSettings",
    "EmulatorConfig",
    "Enrollment",
    "EnrollmentGroup",
    "IndividualEnrollment",
    "Reprovision",
    "ServicePolicy",
    "generate_key",
    "load_config",
    "missing_keys",
    "parse_config",
    "write_enrollment_key",
]

log = logging.getLogger(__name__)

DEFAULT_ID_SCOPE = "0ne00000001"
DEFAULT_DPS_HOST = "global.azure-devices-provisioning.net"
DEFAULT_POLICY_NAME = "iothubowner"
GENERATED_KEY_BYTES = 64  # what DPS generates (docs/protocol/sas-and-keys.md §5)

_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_ID_SCOPE = re.compile(r"[A-Za-z0-9]{1,64}")
_ENROLLMENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_DEVICE_ID = re.compile(r"[A-Za-z0-9\-.%_*?!(),=@$':]{1,128}")
_KEY_FIELDS = ("primary_key", "secondary_key")
_POLICY_FIELDS = ("shared_access_key_name", "shared_access_key")
_POLICY_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SECTIONS = ("enrollment_groups", "individual_enrollments")

E = TypeVar("E", bound=StrEnum)


class ConfigError(ValueError):
    """The configuration is invalid; the message names where and what was expected."""

    def __init__(self, source: str, location: str, message: str) -> None:
        super().__init__(f"{source}: {location}: {message}")
        self.source = source
        self.location = location
        self.message = message


class Allocation(StrEnum):
    """How DPS picks a hub for an enrollment."""

    CUSTOM = "custom"
    HASHED = "hashed"
    STATIC = "static"


class Reprovision(StrEnum):
    """What a re-registration does to an assigned device (docs/protocol/webhook.md §5)."""

    MIGRATE = "migrate"
    RESET = "reset"
    NEVER = "never"

    @property
    def update_hub_assignment(self) -> bool:
        """DPS's `reprovisionPolicy.updateHubAssignment`."""
        return self is not Reprovision.NEVER

    @property
    def migrate_device_data(self) -> bool:
        """DPS's `reprovisionPolicy.migrateDeviceData`."""
        return self is Reprovision.MIGRATE


@dataclass(frozen=True)
class DpsSettings:
    """The `[dps]` table."""

    id_scope: str = DEFAULT_ID_SCOPE
    host: str = DEFAULT_DPS_HOST


@dataclass(frozen=True, kw_only=True)
class Enrollment:
    """What group and individual enrollments share. Keys are base64; never log them."""

    primary_key: str = field(repr=False)
    secondary_key: str = field(repr=False)
    allocation: Allocation
    webhook_url: str | None = field(default=None, repr=False)  # carries the function key
    hubs: tuple[str, ...]
    reprovision: Reprovision
    initial_twin: InitialTwin | None
    enabled: bool

    @property
    def keys(self) -> tuple[str, str]:
        """Primary then secondary key."""
        return (self.primary_key, self.secondary_key)


@dataclass(frozen=True, kw_only=True)
class EnrollmentGroup(Enrollment):
    """One `[[enrollment_groups]]` entry: devices authenticate with keys derived from these."""

    id: str


@dataclass(frozen=True, kw_only=True)
class IndividualEnrollment(Enrollment):
    """One `[[individual_enrollments]]` entry: one registration id, its own keys."""

    registration_id: str
    device_id: str


@dataclass(frozen=True, kw_only=True)
class ServicePolicy:
    """A hub's shared access policy for the service API; `key` None means "generate and keep"."""

    hub: str
    key_name: str = DEFAULT_POLICY_NAME
    key: str | None = field(default=None, repr=False)


@dataclass(frozen=True, kw_only=True)
class EmulatorConfig:
    """The whole configuration, validated."""

    source: str
    dps: DpsSettings
    hubs: tuple[str, ...]
    enrollment_groups: tuple[EnrollmentGroup, ...]
    individual_enrollments: tuple[IndividualEnrollment, ...]
    service_policies: tuple[ServicePolicy, ...] = ()  # one per hub, in `hubs` order
    events_url: str | None = None
    faults: Mapping[str, FaultSpec] = field(default_factory=dict)  # target -> spec at start

    def individual_enrollment(self, registration_id: str) -> IndividualEnrollment | None:
        """The individual enrollment of a registration id (ids match case-insensitively)."""
        wanted = registration_id.lower()
        for enrollment in self.individual_enrollments:
            if enrollment.registration_id.lower() == wanted:
                return enrollment
        return None


def generate_key() -> str:
    """A new random enrollment key: base64 of 64 random bytes, as DPS generates them."""
    return new_key(GENERATED_KEY_BYTES)


def missing_keys(data: Mapping[str, Any]) -> list[tuple[str, int, str]]:
    """Which `(section, index, field)` enrollment keys the data leaves out, in file order."""
    missing: list[tuple[str, int, str]] = []
    for section in _SECTIONS:
        entries = data.get(section, [])
        if not isinstance(entries, list):
            continue
        for index, entry in enumerate(entries):
            if isinstance(entry, dict):
                missing.extend(
                    (section, index, name) for name in _KEY_FIELDS if entry.get(name) in (None, "")
                )
    return missing


def load_config(path: Path, *, make_key: Callable[[], str] = generate_key) -> EmulatorConfig:
    """Read, complete (generated keys written back) and parse the TOML file at `path`."""
    source = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(source, "file", f"cannot be read ({error.strerror})") from None
    data = _parse_toml(text, source)
    missing = missing_keys(data)
    if missing:
        text = _insert_keys(text, missing, make_key, source)
        data = _parse_toml(text, source)
        if missing_keys(data):
            raise ConfigError(source, "file", "generated keys could not be written back")
        config = parse_config(data, source=source)
        _write_atomically(path, text)
        log.info("generated %d enrollment key(s) and wrote them to %s", len(missing), source)
        return config
    config = parse_config(data, source=source)
    if _holds_keys(config) and path.stat().st_mode & 0o077:
        log.warning("%s holds enrollment keys but is readable by others; chmod 600 it", source)
    return config


def parse_config(data: Mapping[str, Any], *, source: str) -> EmulatorConfig:
    """Validate a parsed TOML mapping into an EmulatorConfig, or raise ConfigError."""
    reader = _Reader(source)
    reader.only_fields("top level", data, ("dps", "hubs", "events", "faults", *_SECTIONS))
    dps = reader.dps(data.get("dps", {}))
    hubs = reader.hubs(data.get("hubs"))
    policies = reader.service_policies(data.get("hubs"), hubs)
    events_url = reader.events_url(data.get("events", {}))
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
        faults=_faults(data.get("faults", {}), hubs, source),
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
        self.only_fields("[events]", table, ("url",))
        if "url" not in table:
            return None
        url = table["url"]
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise self.fail("[events]: url", "expected an http:// or https:// URL")
        return url

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
        keys = {name: self.key(where, table, name) for name in _KEY_FIELDS}
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


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(source, "file", f"expected TOML ({error})") from None


def _holds_keys(config: EmulatorConfig) -> bool:
    return bool(config.enrollment_groups or config.individual_enrollments)


_TABLE_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*(enrollment_groups|individual_enrollments)[ \t]*\]\]")


def _insert_keys(
    text: str, missing: Sequence[tuple[str, int, str]], make_key: Callable[[], str], source: str
) -> str:
    """Add `name = "<key>"` lines right under the `[[section]]` headers that lack them.

    Text insertion keeps the file's comments and layout; only `[[section]]` headers are supported
    (an inline array of tables gets a message asking for that form).
    """
    lines = text.splitlines(keepends=True)
    headers: dict[tuple[str, int], int] = {}
    counts = dict.fromkeys(_SECTIONS, 0)
    for number, line in enumerate(lines):
        match = _TABLE_HEADER.match(line)
        if match:
            section = match.group(1)
            headers[(section, counts[section])] = number
            counts[section] += 1
    inserts: dict[int, list[str]] = {}
    for section, index, name in missing:
        if (section, index) not in headers:
            raise ConfigError(
                source,
                f"[[{section}]] #{index + 1}: {name}",
                f"is missing and cannot be written back; write the entry as a [[{section}]] table",
            )
        inserts.setdefault(headers[(section, index)], []).append(f'{name} = "{make_key()}"\n')
    out: list[str] = []
    for number, line in enumerate(lines):
        out.append(line if line.endswith("\n") else line + "\n")
        out.extend(inserts.get(number, []))
    return "".join(out)


_KEY_LINE = re.compile(r"^[ \t]*(primary_key|secondary_key)[ \t]*=")
_ANY_HEADER = re.compile(r"^[ \t]*\[")


def write_enrollment_key(path: Path, section: str, name: str, field_name: str, key: str) -> None:
    """Set one enrollment's `primary_key` or `secondary_key` in the file at `path` (0600, atomic).

    `section` is `enrollment_groups` (found by `id`) or `individual_enrollments` (found by
    `registration_id`), case-insensitively as DPS matches them. Only that one line changes.
    """
    source = path.name
    if section not in _SECTIONS or field_name not in _KEY_FIELDS:
        raise ValueError(f"{section}.{field_name}: not an enrollment key")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(source, "file", f"cannot be read ({error.strerror})") from None
    entries = _parse_toml(text, source).get(section, [])
    id_field = "id" if section == "enrollment_groups" else "registration_id"
    index = next(
        (
            number
            for number, entry in enumerate(entries)
            if isinstance(entry, dict) and str(entry.get(id_field, "")).lower() == name.lower()
        ),
        None,
    )
    if index is None:
        raise ConfigError(source, f"[[{section}]]", f"no entry with {id_field} = {name!r}")
    lines = text.splitlines(keepends=True)
    seen, start = -1, None
    for number, line in enumerate(lines):
        match = _TABLE_HEADER.match(line)
        if match and match.group(1) == section:
            seen += 1
            if seen == index:
                start = number
                break
    if start is None:
        raise ConfigError(
            source,
            f"[[{section}]] #{index + 1}",
            f"cannot be rewritten; write the entry as a [[{section}]] table",
        )
    new_line = f'{field_name} = "{key}"\n'
    end = next((n for n in range(start + 1, len(lines)) if _ANY_HEADER.match(lines[n])), len(lines))
    for number in range(start + 1, end):
        match = _KEY_LINE.match(lines[number])
        if match and match.group(1) == field_name:
            lines[number] = new_line
            break
    else:
        lines.insert(start + 1, new_line)
    updated = "".join(lines)
    if _parse_toml(updated, source)[section][index].get(field_name) != key:
        raise ConfigError(
            source, f"[[{section}]] #{index + 1}: {field_name}", "cannot be rewritten"
        )
    _write_atomically(path, updated)


def _write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename; the new file is 0600 since it holds keys."""
    write_private(path, text)
