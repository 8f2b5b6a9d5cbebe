"""Who may register: a DPS CONNECT or HTTPS request decided against the enrollments. Pure.

Over MQTT: username `{idScope}/registrations/{registrationId}/api-version=...` (no `?`), client
id = the registration id, password a SAS token. Over HTTPS: the id scope and registration id are
in the path, the token in the `Authorization` header (`authorize`). Either way the token is for
`{idScope}/registrations/{registrationId}` (with or without `skn=registration`;
docs/protocol/sas-and-keys.md §4). An individual enrollment of the registration id wins over
groups; its primary then secondary key is tried. Otherwise each group's keys derived for the
registration id, primary then secondary. Anything else (expired, wrong resource, wrong key,
unknown id scope, malformed) is refused: CONNACK 5 over MQTT, 401 over HTTPS.

Errors: `AuthenticationError` (a `wire.DpsError`): `connack` is 5, `reason` a short word, never a
token or a key.
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.config import EmulatorConfig
from emulator.dps.enrollments import EnrollmentGroup, IndividualEnrollment
from emulator.dps.wire import DpsError
from sas.errors import SasError
from sas.keys import derive_device_key
from sas.token import parse_sas_token, verify_sas_token


class AuthenticationError(DpsError):
    """A DPS CONNECT is refused; the message never contains a token or a key."""

    connack = 5

    def __init__(self, reason: str) -> None:
        super().__init__(f"DPS CONNECT refused: {reason}")
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class Registrant:
    """An authenticated DPS connection: who registers, through which enrollment, with which keys."""

    registration_id: str
    enrollment: EnrollmentGroup | IndividualEnrollment
    device_primary_key: str
    device_secondary_key: str

    def __repr__(self) -> str:
        return f"Registrant(registration_id={self.registration_id!r})"

    @property
    def device_id(self) -> str:
        """The hub device id: the individual enrollment's device id, else the registration id."""
        if isinstance(self.enrollment, IndividualEnrollment):
            return self.enrollment.device_id
        return self.registration_id


def parse_username(username: str) -> tuple[str, str]:
    """Split a DPS username into (id scope, registration id), or raise AuthenticationError."""
    scope, marker, rest = username.partition("/registrations/")
    registration_id, slash, api = rest.partition("/")
    if not (scope and marker and registration_id and slash) or "?" in username:
        raise AuthenticationError("malformed username")
    if not api.startswith("api-version="):
        raise AuthenticationError("malformed username")
    return scope, registration_id


def authenticate(
    config: EmulatorConfig,
    *,
    client_id: str,
    username: str,
    password: bytes | None,
    now: float,
) -> Registrant:
    """Decide a DPS CONNECT: the registrant, or AuthenticationError (CONNACK 5)."""
    scope, registration_id = parse_username(username)
    if scope.lower() == config.dps.id_scope.lower() and registration_id != client_id:
        raise AuthenticationError("client id differs from the username's registration id")
    return authorize(
        config, id_scope=scope, registration_id=registration_id, token=password, now=now
    )


def authorize(
    config: EmulatorConfig,
    *,
    id_scope: str,
    registration_id: str,
    token: bytes | None,
    now: float,
) -> Registrant:
    """Decide whether `token` lets `registration_id` register in `id_scope` (MQTT or HTTPS)."""
    if id_scope.lower() != config.dps.id_scope.lower():
        raise AuthenticationError("unknown id scope")
    if token is None:
        raise AuthenticationError("no password")
    try:
        parsed = parse_sas_token(token.decode("utf-8"))
    except (UnicodeDecodeError, SasError):
        raise AuthenticationError("malformed token") from None
    resource = f"{config.dps.id_scope}/registrations/{registration_id}"
    individual = config.individual_enrollment(registration_id)
    candidates: list[tuple[EnrollmentGroup | IndividualEnrollment, tuple[str, str]]]
    if individual is not None:
        candidates = [(individual, individual.keys)]
    else:
        candidates = [
            (
                group,
                (
                    derive_device_key(group.primary_key, registration_id),
                    derive_device_key(group.secondary_key, registration_id),
                ),
            )
            for group in config.enrollment_groups
        ]
    reason = "no enrollment for the registration id"
    for enrollment, keys in candidates:
        try:
            verify_sas_token(parsed, keys, expected_resource=resource, now=now)
        except SasError as error:
            reason = error.reason
            continue
        return Registrant(
            registration_id=registration_id,
            enrollment=enrollment,
            device_primary_key=keys[0],
            device_secondary_key=keys[1],
        )
    raise AuthenticationError(reason)
