"""DPS's own words about a failed registration, which the device SDK does not hand to the app.

azure-iot-device 2.14 ends a failed registration with `ClientError` whose cause says only
"failed registration status with a status code of 200": DPS's `errorCode` and `errorMessage`
(400207 "Custom allocation failed with status code: 400", 400209 for a webhook that refused the
function key, ...) stay inside the SDK. They are in the reply the SDK logs at DEBUG, though:
`Received payload:b'{...}' on topic:$dps/registrations/res/200/?...` from its provisioning MQTT
stage. `DpsReplies` is a logging handler on that one logger (not propagated, so nothing is printed
and no other handler sees it) that keeps each registration id's last error. A DPS reply carries no
key (symmetric-key registrations get none back). It also counts DPS's 429 answers (throttled
requests, which the SDK sends again after `retry-after`, dps-mqtt.md §4): a 429 names no
registration id, so the count is for the whole process (`throttled`).

`likely_cause(code, message)` turns DPS's error into what to look at: the custom-allocation
codes (4002xx) and every other code DPS (and so the emulator's DPS, `emulator.dps.codes`) sends.
Both are best effort: if a later SDK words its log line differently, registrations still work and
failures are reported without DPS's code.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["DpsError", "DpsReplies", "likely_cause"]

SDK_LOGGER = "azure.iot.device.provisioning.pipeline.pipeline_stages_provisioning_mqtt"
MAX_KEPT = 10_000
_LINE = re.compile(r"^Received payload:(b'.*'|b\".*\") on topic:(\S+)$", re.DOTALL)
_THROTTLED_TOPIC = "$dps/registrations/res/429/"


@dataclass(frozen=True)
class DpsError:
    """DPS's error for a registration: its code and message."""

    code: int
    message: str

    def __str__(self) -> str:
        return f"{self.code} {self.message}"


class DpsReplies(logging.Handler):
    """Keeps the error of each registration id's last failed DPS reply (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self._errors: OrderedDict[str, DpsError] = OrderedDict()
        self._guard = threading.Lock()
        self._throttled = 0

    @classmethod
    def install(cls) -> DpsReplies:
        """Attach one to the SDK's provisioning logger (idempotent per process) and return it."""
        logger = logging.getLogger(SDK_LOGGER)
        for handler in logger.handlers:
            if isinstance(handler, DpsReplies):
                return handler
        handler = cls()
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False  # the SDK's DEBUG lines reach this handler and nothing else
        return handler

    def emit(self, record: logging.LogRecord) -> None:
        """Read one SDK log line; remember an error reply."""
        try:
            match = _LINE.match(record.getMessage())
            if match is None:
                return
            if match.group(2).startswith(_THROTTLED_TOPIC):
                with self._guard:
                    self._throttled += 1
                return
            document = json.loads(ast.literal_eval(match.group(1)))
        except (ValueError, SyntaxError, TypeError, UnicodeDecodeError, MemoryError):
            return
        if not isinstance(document, dict):
            return
        state = document.get("registrationState")
        if not isinstance(state, dict):
            return
        registration_id, code = state.get("registrationId"), state.get("errorCode")
        if not isinstance(registration_id, str) or not isinstance(code, int):
            return
        message = state.get("errorMessage")
        error = DpsError(code, message if isinstance(message, str) else "")
        with self._guard:
            self._errors.pop(registration_id.lower(), None)
            self._errors[registration_id.lower()] = error
            while len(self._errors) > MAX_KEPT:
                self._errors.popitem(last=False)

    @property
    def throttled(self) -> int:
        """DPS answers with status 429 seen so far in this process (each one retried by the SDK)."""
        with self._guard:
            return self._throttled

    def error(self, registration_id: str) -> DpsError | None:
        """The error of the last failed reply for `registration_id`, if one was seen."""
        with self._guard:
            return self._errors.get(registration_id.lower())


_GENERAL_CAUSES = {
    400004: (
        "DPS found no operation in the request (an operation id is missing, or the topic is not "
        "one of DPS's)"
    ),
    400012: (
        "DPS could not read the register request: its body must be a JSON object with only "
        "registrationId, payload (and tpm); a device's own data such as modelId goes inside "
        "payload"
    ),
    401002: (
        "DPS refused the credentials: the key does not match the enrollment, the token expired, "
        "or the request names another registration id than the one it was signed for"
    ),
    404201: "DPS has no such enrollment: check the ID scope and the enrollment or group",
    404202: (
        "DPS has no such registration operation: it is gone (polled too late, or the device "
        "registered again many times) or belongs to another registration; register again"
    ),
    429001: (
        "DPS is throttling: too many requests for the instance (1,000 registrations a minute "
        "per unit); the SDK retries after retry-after"
    ),
    500001: "DPS failed while assigning the device; register again later",
}


def likely_cause(code: int | None, message: str = "") -> str:
    """What a DPS error code (and its message) most likely means for this project's setup."""
    status = re.search(r"status code: (\d+)", message)
    webhook_status = int(status.group(1)) if status else None
    if code == 400209:
        return (
            "the webhook answered 401: the function key in the enrollment's webhook URL "
            "(?code=...) is missing or wrong"
        )
    if code == 400208:
        return "the webhook answered without a hub (iotHubHostName empty)"
    if code is not None and code in _GENERAL_CAUSES:
        return _GENERAL_CAUSES[code]
    if code != 400207:
        return "see DPS's error code in the provisioning documentation"
    if webhook_status == 400:
        return (
            "the allocation policy refused the device (a deny rule, or no rule matched), or the "
            "webhook found the request malformed; the registration log says which"
        )
    if webhook_status == 429:
        return (
            "the webhook kept answering 429: the app could not check its store for retired "
            "devices (is Table storage, AzureWebJobsStorage, up?)"
        )
    if webhook_status == 503:
        return "the webhook kept answering 503: the app's policy file (ALLOCATION_POLICY_FILE) does not load"
    if webhook_status == 404:
        return "no function answers at the webhook URL's route (expected /api/allocate)"
    if webhook_status is not None and webhook_status >= 500:
        return "the webhook kept failing; read the Functions app's log"
    if "unavailable" in message:
        return "DPS could not reach the webhook URL: is the Functions app running?"
    if "not linked" in message:
        return "the webhook chose a hub that is not linked to the enrollment"
    return "the custom allocation webhook did not assign the device"
