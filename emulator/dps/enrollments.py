"""DPS's enrollments as values: groups and individual enrollments, allocation and re-provisioning.

Frozen values, read from the configuration file (`emulator.config`) and changed only by operator
edits (`emulator.dps.edits`), which replace them. Keys are base64 and never logged (`repr` hides
them); `generate_key` makes one as DPS does (64 random bytes). The webhook URL carries the function
key and is hidden from `repr` too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from devtools.keys import new_key
from emulator.hub.twin import InitialTwin

DEFAULT_ID_SCOPE = "0ne00000001"
DEFAULT_DPS_HOST = "global.azure-devices-provisioning.net"
GENERATED_KEY_BYTES = 64  # what DPS generates (docs/protocol/sas-and-keys.md §5)


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


def generate_key() -> str:
    """A new random enrollment key: base64 of 64 random bytes, as DPS generates them."""
    return new_key(GENERATED_KEY_BYTES)
