"""DPS's error codes, as the service puts them in `errorCode`. Pure.

A code is the HTTP status followed by three digits (`code // 1000` is the status of the reply
that carries it). Every error the emulated DPS sends is one of these, with DPS's own code
(docs/protocol/dps-mqtt.md §5a has the sources and the choices):

    code    status  name                        the emulator sends it when
    400004  400     ArgumentInvalid             a request names no operation (unknown topic, no
                                                `operationId`), or an enrollment links no hub
    400012  400     DeserializationError        a register body is not JSON, not an object, has a
                                                member DPS does not know, or a member of the
                                                wrong type ("Deserialization error.")
    400207  200*    CustomAllocationFailed      the webhook refused, failed or chose a hub that is
                                                not linked
    400208  200*    CustomAllocationIotHubNotSpecified   the webhook's hub is "" or null
    400209  200*    CustomAllocationUnauthorizedAccess   the webhook answered 401
    401002  401     UnauthorizedAccess          a register body names another registration id than
                                                the one the connection authenticated
    404201  404     EnrollmentNotFound          (kept for explanations; an unknown enrollment is
                                                refused at CONNECT, CONNACK 5)
    404202  404     RegistrationNotFound        a poll for an operation DPS does not have
    429001  429     ThrottlingException         `fault-set dps --throttle-...` (faults.gate)
    500001  500     ServerError                 the emulator failed while assigning

    * inside a `failed` registration state, on a 200 reply

Names follow Azure/azure-iot-sdk-csharp's provisioning service client
(`provisioning/service/src/Exceptions/ErrorCode.cs`) where it has them; 404201/404202 are seen
from DPS (MicrosoftDocs/azure-docs#57082) but their meanings are not published: which is which
is this emulator's inference.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["DpsErrorCode"]


class DpsErrorCode(IntEnum):
    """One of DPS's six-digit error codes."""

    ARGUMENT_INVALID = 400004
    DESERIALIZATION_ERROR = 400012
    CUSTOM_ALLOCATION_FAILED = 400207
    CUSTOM_ALLOCATION_HUB_NOT_SPECIFIED = 400208
    CUSTOM_ALLOCATION_UNAUTHORIZED = 400209
    UNAUTHORIZED = 401002
    ENROLLMENT_NOT_FOUND = 404201
    REGISTRATION_NOT_FOUND = 404202
    THROTTLED = 429001
    SERVER_ERROR = 500001

    @property
    def status(self) -> int:
        """The HTTP (reply topic) status a request failing with this code gets."""
        return int(self) // 1000
