"""The DPS endpoint the MQTT shell routes DPS connections to (a `ports.MqttEndpoint`).

It keeps DPS's state (connected registrants, operations, registration records) and runs each
allocation as an asyncio task, so `publish` returns at once: a register gets `202 assigning`
straight away and the device's polls see the result when the task has finished. Decisions are
the pure modules beside it (`wire`, `auth`, `allocation`, `reprovision`); this one only sequences them:

    register  -> operation (assigning) -> 202
              -> task: enabled? -> allocate (static | hashed | webhook with retries)
                       -> plan_assignment (reprovision policy) -> hubs via ports.HubDirectory
                       -> operation (assigned | failed | disabled)
    poll      -> 202 while assigning, else 200 with the final body; unknown operation -> 404 404202

`register` and `poll` are that sequence once, for every transport: the MQTT endpoint methods
below put their `Reply` on a reply topic, the HTTPS device API (`https.dps_api`) in a response.

The webhook is reached through the `webhook_client.Webhook` seam; the clock and the sleep between
webhook retries are injected. `time_scale` shrinks DPS's timings for tests: the webhook retry
schedule, and the `retry-after` of its 202s (3 s, never below 1 s: the SDK reads an integer).
Nothing here logs a key, a token or a webhook URL's query.

Besides DPS's own records (assigned devices), the service keeps each registration id's latest
`Attempt` for operators: in flight (with the webhook's last answer and when DPS calls it again),
failed (DPS's error code and message) or disabled, and the IoT Plug and Play model the device
announced in its payload (`{"modelId": "dtmi:..."}`, the PnP convention). Real DPS shows much the
same in its portal's registration records; here `python -m emulator registrations` and the
simulator read it. DPS does not put that model into the hub's twin: the twin's `modelId` comes
from the device's hub CONNECT (`hub.registry.Registry.announce_model`).

Admission (`Admission`, `quotas.limits.Quotas` in the emulator): before a register or a poll is
served, it may be refused with 429 429001 and a `retry-after`, on every transport, as DPS throttles
(its quotas, and the emulator's own capacity: `assigning` is how many allocations run now). The
SDK sends the same request again after `retry-after` (dps-mqtt.md §4).

`publish` must be called from the event loop's thread (it starts tasks); `aclose()` cancels the
allocations still running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from emulator.activity import Activity
from emulator.config import EmulatorConfig
from emulator.dps.allocation import (
    Assigned,
    Failed,
    Retry,
    WebhookOutcome,
    allocation_request,
    choose_native_hub,
    exhausted_outcome,
    linked_hubs,
    retry_delays,
    webhook_outcome,
)
from emulator.dps.auth import AuthenticationError, Registrant, authenticate
from emulator.dps.codes import DpsErrorCode
from emulator.dps.enrollments import Allocation, IndividualEnrollment, Reprovision
from emulator.dps.reprovision import HubPlan, TwinSource, plan_assignment
from emulator.dps.webhook import Webhook, WebhookUnavailable
from emulator.dps.wire import (
    RETRY_AFTER,
    DpsRequestError,
    Operation,
    Register,
    RegistrationRecord,
    RegistrationStatus,
    Reply,
    error_body,
    format_dps_timestamp,
    new_operation_id,
    operation_body,
    parse_request,
    reply_topic,
    subscription_allowed,
)
from emulator.endpoints import CONNACK_ACCEPTED, Close, HubDirectory, Send
from emulator.faults.spec import THROTTLED_MESSAGE
from emulator.hub.twin import TwinDocument

__all__ = ["Admission", "Attempt", "DpsService", "retry_after"]

log = logging.getLogger(__name__)

MAX_OPERATIONS = 100_000
# A registration id polls one operation at a time; older ones only matter to a late poll. Keeping a
# few per id means one device's register flood can only evict its own operations.
OPERATIONS_PER_REGISTRATION = 4
MAX_ATTEMPTS = 10_000
MAX_ANSWER_CHARS = 300
MAX_MODEL_ID_CHARS = 256


class Admission(Protocol):
    """Whether DPS serves a request now: None, or the `retry-after` of a 429 (throttled)."""

    def register(self, now: float, *, assigning: int) -> int | None: ...

    def poll(self, registration_id: str, now: float) -> int | None: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class Attempt:
    """A registration id's latest registration, as an operator wants to see it."""

    registration_id: str
    enrollment: str  # "group <id>" or "individual enrollment <id>"
    status: RegistrationStatus
    started: float
    updated: float
    webhook_calls: int = 0
    webhook_max_calls: int = 0
    webhook_status: int | None = None  # the last HTTP status; None: no answer (or not called)
    webhook_answer: str | None = None  # the start of the last answer's body (a refusal's reason)
    webhook_error: str | None = None  # why the last call got no answer
    next_call_at: float | None = None  # when DPS calls the webhook again (retrying)
    error_code: int | None = None
    error_message: str | None = None
    assigned_hub: str | None = None
    device_id: str | None = None
    model_id: str | None = None  # the payload's IoT Plug and Play `modelId`, if it sent one

    def to_json(self, now: float) -> dict[str, object]:
        """The attempt for the admin API (times as seconds ago / from now)."""
        return {
            "registration_id": self.registration_id,
            "enrollment": self.enrollment,
            "status": self.status.value,
            "seconds_since_start": round(now - self.started, 1),
            "webhook_calls": self.webhook_calls,
            "webhook_max_calls": self.webhook_max_calls,
            "webhook_status": self.webhook_status,
            "webhook_answer": self.webhook_answer,
            "webhook_error": self.webhook_error,
            "next_call_in": (
                round(max(0.0, self.next_call_at - now), 1)
                if self.next_call_at is not None
                else None
            ),
            "error_code": self.error_code,
            "error_message": self.error_message,
            "assigned_hub": self.assigned_hub,
            "device_id": self.device_id,
            "model_id": self.model_id,
        }


class DpsService:
    """Device Provisioning Service over MQTT: authentication, registration, allocation."""

    def __init__(
        self,
        config: EmulatorConfig,
        hubs: HubDirectory,
        webhook: Webhook,
        *,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        entropy: Callable[[int], bytes] = os.urandom,
        activity: Activity | None = None,
        admission: Admission | None = None,
    ) -> None:
        self._activity = activity or Activity()
        self._admission = admission
        self._config = config
        self._hubs = hubs
        self._webhook = webhook
        self._delays = retry_delays(time_scale)
        self._retry_after = retry_after(time_scale)
        self._clock = clock
        self._sleep = sleep
        self._entropy = entropy
        self._started = format_dps_timestamp(clock())
        self._registrants: dict[str, Registrant] = {}
        self._operations: dict[str, Operation] = {}
        self._operations_of: dict[str, deque[str]] = {}  # registration id (lower) -> operation ids
        self._records: dict[str, RegistrationRecord] = {}
        self._attempts: OrderedDict[str, Attempt] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        # Called with each new or changed record before the device hears of it (persistence).
        self.on_record: Callable[[RegistrationRecord], None] | None = None

    @property
    def id_scope(self) -> str:
        """The configured id scope (the first segment of a DPS CONNECT username)."""
        return self._config.dps.id_scope

    @property
    def config(self) -> EmulatorConfig:
        """The enrollments DPS authenticates and allocates with now."""
        return self._config

    def replace_config(self, config: EmulatorConfig) -> None:
        """Use edited enrollments (a new key, enabled or not) for the next CONNECTs.

        Connections already accepted keep the enrollment they authenticated with, as their
        credentials were checked under it; the SDK connects afresh for every registration.
        """
        self._config = config

    def record(self, registration_id: str) -> RegistrationRecord | None:
        """DPS's record of a registration id's current assignment, if any."""
        return self._records.get(registration_id.lower())

    def records(self) -> tuple[RegistrationRecord, ...]:
        """Every registration record, in the order they were first made."""
        return tuple(self._records.values())

    def attempts(self) -> tuple[Attempt, ...]:
        """The latest attempt of each registration id seen since start, oldest change first."""
        return tuple(self._attempts.values())

    def attempt(self, registration_id: str) -> Attempt | None:
        """The latest attempt of one registration id, if it registered since start."""
        return self._attempts.get(registration_id.lower())

    def _track(self, registration_id: str, **changes: object) -> None:
        key = registration_id.lower()
        current = self._attempts.pop(key, None)
        if current is None:
            return
        self._attempts[key] = dataclasses.replace(current, updated=self._clock(), **changes)  # type: ignore[arg-type]

    def restore_records(self, records: Iterable[RegistrationRecord]) -> None:
        """Put back persisted registration records (state from a previous run)."""
        for record in records:
            self._records[record.registration_id.lower()] = record

    async def idle(self) -> None:
        """Wait until no allocation is running (for tests and orderly shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel the allocations still running and release the webhook client."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._webhook.aclose()

    # -- ports.MqttEndpoint ---------------------------------------------------------------------

    def connect(
        self,
        *,
        client_id: str,
        username: str,
        password: bytes | None,
        send: Send,
        close: Close,
        now: float,
        clean_session: bool = True,
    ) -> int:
        """Authenticate a DPS CONNECT (CONNACK 0, or 5 for any credential problem); DPS keeps
        no session, whatever the CleanSession flag."""
        try:
            registrant = authenticate(
                self._config, client_id=client_id, username=username, password=password, now=now
            )
        except AuthenticationError as error:
            log.info("DPS CONNECT refused for %r: %s", client_id, error.reason)
            return error.connack
        self._registrants[client_id] = registrant
        log.info("DPS CONNECT accepted for %r", client_id)
        return CONNACK_ACCEPTED

    def publish(
        self, *, client_id: str, topic: str, payload: bytes, send: Send, now: float
    ) -> bool:
        """Serve a register or a poll; answers go through `send` (errors too: always accepted)."""
        send = self._traced(client_id, send)
        registrant = self._registrants.get(client_id)
        if registrant is None:
            log.warning("DPS PUBLISH from %r without an accepted CONNECT; dropped", client_id)
            return True
        try:
            request = parse_request(topic, payload, registration_id=registrant.registration_id)
        except DpsRequestError as error:
            log.info("DPS request from %r refused: %s", client_id, error.message)
            if error.rid is not None:
                send(
                    reply_topic(error.status, error.rid),
                    error_body(error.code, error.message, now=now),
                )
            return True
        if isinstance(request, Register):
            reply = self.register(registrant, request.payload, now=now)
        else:
            reply = self.poll(registrant, request.operation_id, now=now)
        send(reply_topic(reply.status, request.rid, retry_after=reply.retry_after), reply.body)
        return True

    def _traced(self, client_id: str, send: Send) -> Send:
        """`send`, telling `activity` what goes on the wire (`dps.reply`)."""

        def traced(topic: str, body: bytes, /, **_: object) -> None:
            send(topic, body)  # DPS replies at QoS 1 and sets no other option
            try:
                document = json.loads(body) if body else None
            except ValueError:
                document = None
            self._activity.publish(
                "dps.reply", self._clock(), client_id=client_id, topic=topic, body=document
            )

        return traced

    def subscribe(self, *, client_id: str, topic_filter: str, qos: int = 1) -> bool:
        """Grant `$dps/registrations/res/#` only."""
        return subscription_allowed(topic_filter)

    def unsubscribe(self, *, client_id: str, topic_filter: str) -> None:
        """Nothing to forget: DPS replies on the response topic regardless."""

    def disconnect(self, *, client_id: str) -> None:
        """Forget the connection; allocations already started still finish."""
        self._registrants.pop(client_id, None)

    # -- requests, whatever the transport -------------------------------------------------------

    @property
    def assigning(self) -> int:
        """Allocations running now (webhook calls and their retry waits included)."""
        return len(self._tasks)

    def register(self, registrant: Registrant, payload: object, *, now: float) -> Reply:
        """Start a registration (the allocation runs as a task): 202 `assigning`, or 429 when
        admission refuses it."""
        if self._admission is not None:
            wait = self._admission.register(now, assigning=len(self._tasks))
            if wait is not None:
                return _throttled(wait, now)
        stamp = format_dps_timestamp(now)
        operation = Operation(
            operation_id=new_operation_id(self._entropy(24)),
            registration_id=registrant.registration_id,
            status=RegistrationStatus.ASSIGNING,
            created=stamp,
            last_updated=stamp,
        )
        self._store(operation)
        key = registrant.registration_id.lower()
        self._attempts.pop(key, None)
        self._attempts[key] = Attempt(
            registration_id=registrant.registration_id,
            enrollment=_enrollment_name(registrant),
            status=RegistrationStatus.ASSIGNING,
            started=now,
            updated=now,
            webhook_max_calls=len(self._delays) + 1,
            model_id=_announced_model(payload),
        )
        while len(self._attempts) > MAX_ATTEMPTS:
            self._attempts.popitem(last=False)
        log.info(
            "DPS register %r via %s: operation %s",
            registrant.registration_id,
            _enrollment_name(registrant),
            operation.operation_id,
        )
        task = asyncio.get_running_loop().create_task(
            self._allocate(operation, registrant, payload),
            name=f"dps-allocate-{registrant.registration_id}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return Reply(202, operation_body(operation), self._retry_after)

    def poll(self, registrant: Registrant, operation_id: str, *, now: float) -> Reply:
        """An operation's status: 202 while assigning, 200 once final, 404 if unknown; 429
        when admission refuses the poll."""
        if self._admission is not None:
            wait = self._admission.poll(registrant.registration_id, now)
            if wait is not None:
                return _throttled(wait, now)
        operation = self._operations.get(operation_id)
        if operation is None or (
            operation.registration_id.lower() != registrant.registration_id.lower()
        ):
            code = DpsErrorCode.REGISTRATION_NOT_FOUND
            return Reply(
                code.status, error_body(code, "Registration operation not found.", now=now)
            )
        if operation.status is RegistrationStatus.ASSIGNING:
            return Reply(202, operation_body(operation, polled=True), self._retry_after)
        return Reply(200, operation_body(operation))

    def _update(self, operation: Operation) -> None:
        """Replace a kept operation with its new state; one already dropped stays dropped (its
        device polled too late or registered again too often: it would evict a newer one)."""
        if operation.operation_id in self._operations:
            self._operations[operation.operation_id] = operation

    def _store(self, operation: Operation) -> None:
        """Keep a new operation: each registration id's last few, fairly."""
        self._operations[operation.operation_id] = operation
        mine = self._operations_of.setdefault(operation.registration_id.lower(), deque())
        mine.append(operation.operation_id)
        while len(mine) > OPERATIONS_PER_REGISTRATION:
            self._operations.pop(mine.popleft(), None)
        while len(self._operations) > MAX_OPERATIONS:  # many devices: the oldest device's goes
            oldest = next(iter(self._operations))
            owner = self._operations.pop(oldest).registration_id.lower()
            ids = self._operations_of.get(owner)
            if ids is not None:
                if oldest in ids:
                    ids.remove(oldest)
                if not ids:
                    del self._operations_of[owner]

    # -- allocation -----------------------------------------------------------------------------

    async def _allocate(
        self, operation: Operation, registrant: Registrant, payload: object
    ) -> None:
        try:
            await self._allocate_unguarded(operation, registrant, payload)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("DPS allocation of %r failed unexpectedly", registrant.registration_id)
            self._finish(
                operation,
                RegistrationStatus.FAILED,
                error=Failed(
                    DpsErrorCode.SERVER_ERROR, "Internal error while assigning the device."
                ),
            )

    async def _allocate_unguarded(
        self, operation: Operation, registrant: Registrant, payload: object
    ) -> None:
        enrollment = registrant.enrollment
        if not enrollment.enabled:
            log.info("DPS registration %r: enrollment disabled", registrant.registration_id)
            self._finish(operation, RegistrationStatus.DISABLED)
            return
        record = self.record(registrant.registration_id)
        linked = linked_hubs(enrollment, record)
        outcome: Assigned | Failed
        if enrollment.allocation is Allocation.CUSTOM:
            outcome = await self._call_webhook(registrant, record, payload, linked)
        else:
            outcome = choose_native_hub(enrollment, registrant.registration_id, linked)
        if isinstance(outcome, Failed):
            log.info(
                "DPS registration %r failed: %d %s",
                registrant.registration_id,
                outcome.error_code,
                outcome.message,
            )
            self._finish(operation, RegistrationStatus.FAILED, error=outcome)
            return
        now = self._clock()
        new_record, plan = plan_assignment(registrant, outcome, record=record, now=now)
        self._apply(plan, registrant, now)
        self._records[registrant.registration_id.lower()] = new_record
        if self.on_record is not None:
            self.on_record(new_record)
        log.info(
            "DPS registration %r assigned to %s (%s)",
            registrant.registration_id,
            new_record.assigned_hub,
            new_record.substatus.value,
        )
        self._finish(
            operation, RegistrationStatus.ASSIGNED, record=new_record, payload=outcome.payload
        )

    async def _call_webhook(
        self,
        registrant: Registrant,
        record: RegistrationRecord | None,
        payload: object,
        linked: tuple[str, ...],
    ) -> Assigned | Failed:
        url = registrant.enrollment.webhook_url or ""
        request = allocation_request(
            registrant,
            record=record,
            payload=payload,
            linked=linked,
            enrollment_created=self._started,
        )
        body = json.dumps(request).encode("utf-8")
        pinned = (
            record.assigned_hub
            if record is not None and registrant.enrollment.reprovision is Reprovision.NEVER
            else None
        )
        last = Retry(None)
        who = registrant.registration_id
        for attempt in range(len(self._delays) + 1):
            started = time.monotonic()
            try:
                answer = await self._webhook.post(url, body)
            except WebhookUnavailable as error:
                log.info("DPS webhook call %d: %s", attempt + 1, error)
                outcome: WebhookOutcome = Retry(None)
                self._activity.publish(
                    "dps.webhook",
                    self._clock(),
                    registration_id=who,
                    attempt=attempt + 1,
                    status=None,
                    latency_ms=round((time.monotonic() - started) * 1000, 1),
                    request=request,
                    answer=None,
                    error=str(error),
                )
                self._track(
                    who,
                    webhook_calls=attempt + 1,
                    webhook_status=None,
                    webhook_answer=None,
                    webhook_error=str(error),
                )
            else:
                outcome = webhook_outcome(answer.status, answer.body, linked, pinned=pinned)
                self._activity.publish(
                    "dps.webhook",
                    self._clock(),
                    registration_id=who,
                    attempt=attempt + 1,
                    status=answer.status,
                    latency_ms=round((time.monotonic() - started) * 1000, 1),
                    request=request,
                    answer=_excerpt(answer.body),
                    error=None,
                )
                level = logging.WARNING if isinstance(outcome, Retry) else logging.INFO
                log.log(
                    level,
                    "DPS webhook call %d of %d for %r: HTTP %d%s",
                    attempt + 1,
                    len(self._delays) + 1,
                    who,
                    answer.status,
                    "; DPS retries" if isinstance(outcome, Retry) else "",
                )
                self._track(
                    who,
                    webhook_calls=attempt + 1,
                    webhook_status=answer.status,
                    webhook_answer=_excerpt(answer.body) if answer.status != 200 else None,
                    webhook_error=None,
                )
            if not isinstance(outcome, Retry):
                self._track(who, next_call_at=None)
                return outcome
            last = outcome
            if attempt < len(self._delays):
                self._track(who, next_call_at=self._clock() + self._delays[attempt])
                await self._sleep(self._delays[attempt])
        self._track(who, next_call_at=None)
        return exhausted_outcome(last)

    def _apply(self, plan: HubPlan, registrant: Registrant, now: float) -> None:
        """Create or update the device on its hub, then remove it from the hub it left."""
        existing = self._hubs.device_twin(plan.hub, plan.device_id)
        twin: TwinDocument | None
        if plan.twin_source is TwinSource.INITIAL:
            twin = TwinDocument.new(plan.initial_twin, now=now)
        elif plan.twin_source is TwinSource.MIGRATE and plan.delete_from is not None:
            twin = self._hubs.device_twin(plan.delete_from, plan.device_id)
            if twin is None:
                twin = TwinDocument.new(plan.initial_twin, now=now)
        else:
            twin = None if existing is not None else TwinDocument.new(plan.initial_twin, now=now)
        self._hubs.upsert_device(
            plan.hub,
            plan.device_id,
            primary_key=registrant.device_primary_key,
            secondary_key=registrant.device_secondary_key,
            twin=twin,
        )
        if plan.delete_from is not None:
            self._hubs.delete_device(plan.delete_from, plan.device_id)

    def _finish(
        self,
        operation: Operation,
        status: RegistrationStatus,
        *,
        record: RegistrationRecord | None = None,
        payload: object = None,
        error: Failed | None = None,
    ) -> None:
        self._track(
            operation.registration_id,
            status=status,
            error_code=error.error_code if error else None,
            error_message=error.message if error else None,
            assigned_hub=record.assigned_hub if record else None,
            device_id=record.device_id if record else None,
        )
        self._update(
            dataclasses.replace(
                operation,
                status=status,
                last_updated=format_dps_timestamp(self._clock()),
                record=record,
                payload=payload,
                error_code=error.error_code if error else None,
                error_message=error.message if error else None,
            )
        )


def _throttled(retry_after: int, now: float) -> Reply:
    """DPS's throttling answer (wire-traces D7)."""
    code = DpsErrorCode.THROTTLED
    return Reply(code.status, error_body(code, THROTTLED_MESSAGE, now=now), retry_after)


def retry_after(time_scale: float = 1.0) -> int:
    """The `retry-after` of DPS's 202s: 3 s, times `time_scale`, at least 1 (the SDK int()s it)."""
    return max(1, round(RETRY_AFTER * time_scale))


def _announced_model(payload: object) -> str | None:
    """The IoT Plug and Play model id a register payload announces (`{"modelId": "dtmi:..."}`)."""
    if not isinstance(payload, dict):
        return None
    model = payload.get("modelId")
    if not isinstance(model, str) or not model:
        return None
    return model[:MAX_MODEL_ID_CHARS]


def _excerpt(body: bytes) -> str:
    """The start of a webhook's answer, as text, for operators (a refusal says why)."""
    text = body[: MAX_ANSWER_CHARS * 4].decode("utf-8", "replace")
    return text if len(text) <= MAX_ANSWER_CHARS else text[:MAX_ANSWER_CHARS] + "..."


def _enrollment_name(registrant: Registrant) -> str:
    enrollment = registrant.enrollment
    if isinstance(enrollment, IndividualEnrollment):
        return f"individual enrollment {enrollment.registration_id!r}"
    return f"group {enrollment.id!r}"
