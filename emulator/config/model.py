"""The configuration as one value: `EmulatorConfig`, and each hub's service `ServicePolicy`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from emulator.dps.enrollments import DpsSettings, EnrollmentGroup, IndividualEnrollment
from emulator.faults.spec import FaultSpec
from emulator.hub.presence import PresencePolicy
from emulator.quotas.limits import QuotaSettings

DEFAULT_POLICY_NAME = "iothubowner"


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
    presence: PresencePolicy = field(default_factory=PresencePolicy)  # connection events
    faults: Mapping[str, FaultSpec] = field(default_factory=dict)  # target -> spec at start
    quotas: QuotaSettings = field(default_factory=QuotaSettings)  # Azure's limits by default

    def individual_enrollment(self, registration_id: str) -> IndividualEnrollment | None:
        """The individual enrollment of a registration id (ids match case-insensitively)."""
        wanted = registration_id.lower()
        for enrollment in self.individual_enrollments:
            if enrollment.registration_id.lower() == wanted:
                return enrollment
        return None
