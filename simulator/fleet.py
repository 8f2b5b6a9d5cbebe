"""`python -m simulator fleet`: many devices from one group key, provisioned concurrently.

For each of `--count N` registration ids the device keys are derived from the group keys (as
`derive-key` does), then each device registers with DPS (primary key, then secondary), connects to
its hub, sends `--messages` telemetry messages and disconnects. The ids come from `--id-template`
(`{n}` is the device's number, 1..N zero-padded; several templates are used in turn) or
`--prefix P` (the template `P{n}`).

`--local` takes everything else from the running local cloud (`make up`): DPS's host and ID scope,
the CA, and the keys of `--group` (default: its first custom-allocation group). Its default ids
are ones the default policy (the tutorial's, `examples/tutorial-policy.toml`) admits: toasters
and heat pumps in turn (`fleet{n}-contoso-tstrsd-007`, `fleet{n}-contoso-hpsd-088`).
At most `--concurrency` devices are in flight: the SDK waits a fixed 2 s before its first DPS poll,
so throughput comes from overlap, while each SDK client costs a network thread, so the overlap is
bounded by an asyncio semaphore.

Worker processes: one process holds at most `CLIENTS_PER_PROCESS` (100) SDK clients in flight, so a
higher concurrency is spread over `ceil(concurrency / 100)` worker processes (`--processes` to
choose), each running its share of the devices. The reason is paho-mqtt 1.6 under the SDK: its
network loop watches its socket with `select()`, which cannot take a file descriptor above 1023
(FD_SETSIZE). Around 200 clients in one process (each holds a socket and a socket pair, and a
device briefly has a DPS and a hub client) push new sockets past that number; paho's loop then
fails at once and waits for its 2-hour reconnect delay, the CONNACK is never read, and the SDK
reports `OperationTimeout` after its 60 s connect watchdog. Found with py-spy and `ss`: the
stuck clients' paho threads sat in `_reconnect_wait` with the CONNACK unread in the socket.

Throttling is not failure. DPS's 429 answers are retried by the SDK itself after `retry-after`
(counted from the SDK's own log of DPS replies); a CONNACK 3 ("server unavailable", how DPS or a
hub refuses a connection it cannot take now) ends the SDK's first connect, so the fleet retries the
step itself with exponential backoff and jitter (`busy_delay`), up to `MAX_BUSY_RETRIES` times.
Both are reported as throttled retries, apart from failures.

While running, a progress line goes to stderr (redrawn in place on a terminal, a plain line per
10 % otherwise). Then a summary on stdout: devices per hub, per allocation rule, provisioning
latency p50/p95/p99, throttled retries and failures by reason. Exit code 0 only if every device
succeeded, 1 if any failed, 2 for usage errors.

Where the rule comes from: the DPS payload's `rule` field when the allocation policy returns one
(`[rules.payload] rule = "{rule}"`); with `--registration-log`, the webhook's registration log in
Table storage (connection string in `AzureWebJobsStorage`, tables `--table-prefix`), which records
the rule of every decision. Neither -> "(not reported)".

`summarize`, `render`, `busy_delay` and `spread` are pure; the rest is the SDK shell.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import queue
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sas import RegistrationIdError
from simulator import keys_cli
from simulator.device import (
    HubRefused,
    KeysRefused,
    RegistrationFailed,
    ServerBusy,
    SimulatorError,
    Target,
    Unreachable,
    connect,
    quiet_sdk_logs,
    register,
)
from simulator.dps_replies import DpsReplies
from simulator.local import local_group, local_storage
from simulator.run_cli import add_target_arguments, parse_payload, target_from
from simulator.secrets_file import DeviceSecrets, UsageError, derive_secrets

__all__ = [
    "DeviceOutcome",
    "FleetRun",
    "FleetSummary",
    "Progress",
    "busy_delay",
    "percentile",
    "register_command",
    "render",
    "run_fleet",
    "run_spread",
    "spread",
    "summarize",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
NOT_REPORTED = "(not reported)"
STORAGE_SETTING = "AzureWebJobsStorage"
DEFAULT_DPS_HOST = "global.azure-devices-provisioning.net"
DEFAULT_PREFIX = "sim-"
# What the default policy of the local cloud (the tutorial's) admits: toasters and heat pumps.
LOCAL_TEMPLATES = ("fleet{n}-contoso-tstrsd-007", "fleet{n}-contoso-hpsd-088")
# SDK clients in flight per process: paho 1.6's select() fails on sockets numbered above 1023,
# which ~200 clients in one process reach (module docstring); 100 keep well below it.
CLIENTS_PER_PROCESS = 100
MAX_BUSY_RETRIES = 20  # CONNACK 3 retries per step (register, connect) before it counts as failed
BUSY_DELAY_CAP = 30.0  # seconds: the longest wait between two of them
WORKER_EXITED = "fleet: worker process exited"
THROTTLED_DPS_429 = "dps: 429, retried by the SDK after retry-after"
THROTTLED_DPS_BUSY = "dps: CONNACK 3, retried by the fleet"
THROTTLED_HUB_BUSY = "hub: CONNACK 3, retried by the fleet"


@dataclass(frozen=True, kw_only=True)
class DeviceOutcome:
    """One device's run: where it landed, by which rule, how long DPS took, or why it failed."""

    registration_id: str
    hub: str | None = None
    rule: str | None = None
    provisioning_seconds: float | None = None
    failure: str | None = None
    dps_busy_retries: int = 0  # CONNACK 3 from DPS, retried
    hub_busy_retries: int = 0  # CONNACK 3 from the hub, retried


@dataclass(frozen=True, kw_only=True)
class FleetRun:
    """What a run gives back: each device's outcome, and DPS's 429s the SDK retried."""

    outcomes: tuple[DeviceOutcome, ...]
    dps_throttled: int = 0


@dataclass(frozen=True, kw_only=True)
class FleetSummary:
    """What `render` prints."""

    devices: int
    succeeded: int
    per_hub: tuple[tuple[str, int], ...]
    per_rule: tuple[tuple[str, int], ...]
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    failures: tuple[tuple[str, int], ...]
    seconds: float
    throttled: tuple[tuple[str, int], ...] = ()  # throttled retries by kind (none: empty)

    @property
    def throttled_retries(self) -> int:
        """Requests or connections refused for throttling and tried again (not failures)."""
        return sum(count for _, count in self.throttled)

    @property
    def failed(self) -> int:
        """Devices that did not finish."""
        return self.devices - self.succeeded

    @property
    def devices_per_second(self) -> float:
        """Finished devices per wall-clock second."""
        return self.succeeded / self.seconds if self.seconds > 0 else 0.0


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (`fraction` in (0, 1]) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summarize(
    outcomes: Sequence[DeviceOutcome], *, seconds: float, dps_throttled: int = 0
) -> FleetSummary:
    """Count and rank the outcomes of one fleet run (`dps_throttled`: DPS's 429s, retried)."""
    done = [outcome for outcome in outcomes if outcome.failure is None]
    latencies = [o.provisioning_seconds for o in done if o.provisioning_seconds is not None]

    def ranked(counter: Counter[str]) -> tuple[tuple[str, int], ...]:
        return tuple(sorted(counter.items(), key=lambda item: (-item[1], item[0])))

    return FleetSummary(
        devices=len(outcomes),
        succeeded=len(done),
        per_hub=ranked(Counter(o.hub or "?" for o in done)),
        per_rule=ranked(Counter(o.rule or NOT_REPORTED for o in done)),
        latency_p50=percentile(latencies, 0.50) if latencies else None,
        latency_p95=percentile(latencies, 0.95) if latencies else None,
        latency_p99=percentile(latencies, 0.99) if latencies else None,
        failures=ranked(Counter(o.failure for o in outcomes if o.failure is not None)),
        seconds=seconds,
        throttled=tuple(
            (kind, count)
            for kind, count in (
                (THROTTLED_DPS_429, dps_throttled),
                (THROTTLED_DPS_BUSY, sum(o.dps_busy_retries for o in outcomes)),
                (THROTTLED_HUB_BUSY, sum(o.hub_busy_retries for o in outcomes)),
            )
            if count
        ),
    )


def render(summary: FleetSummary) -> str:
    """The summary as plain-text tables."""

    def table(title: str, rows: Sequence[tuple[str, object]], unit: str = "devices") -> list[str]:
        width = max([len(title), *(len(name) for name, _ in rows)])
        lines = [f"{title:<{width}}  {unit:>7}", f"{'-' * width}  -------"]
        lines += [f"{name:<{width}}  {count:>7}" for name, count in rows]
        return [*lines, ""]

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f} s"

    lines = [
        f"fleet: {summary.succeeded}/{summary.devices} device(s) provisioned, connected and sent "
        f"telemetry in {summary.seconds:.1f} s ({summary.devices_per_second:.1f} devices/s)",
        "",
        *table("hub", summary.per_hub),
        *table("rule", summary.per_rule),
        "provisioning latency: "
        f"p50 {seconds(summary.latency_p50)}, p95 {seconds(summary.latency_p95)}, "
        f"p99 {seconds(summary.latency_p99)}",
        "",
    ]
    if summary.throttled:
        lines += [f"throttled retries: {summary.throttled_retries} (not failures)", ""]
        lines += table("throttled", summary.throttled, "retries")
    else:
        lines += ["throttled retries: none", ""]
    if summary.failures:
        lines += table("failure", summary.failures)
    else:
        lines.append("failures: none")
    return "\n".join(lines).rstrip() + "\n"


class Progress:
    """A progress line on `stream`: redrawn in place on a terminal, else one line per 10 %."""

    def __init__(
        self,
        total: int,
        stream: TextIO,
        *,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.clock = clock
        self.done = 0
        self.failed = 0
        self._started = clock()
        self._next_step = 1

    def advance(self, *, ok: bool) -> None:
        """One more device finished."""
        self.done += 1
        self.failed += 0 if ok else 1
        if self.tty:
            self.stream.write("\r" + self.line())
        elif self.done * 10 >= self._next_step * self.total or self.done == self.total:
            self._next_step = self.done * 10 // max(self.total, 1) + 1
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the line on a terminal."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def line(self) -> str:
        """`[#####.....]  50/100  failed 0  12.3 s`."""
        width = 30
        filled = width * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (width - filled)
        elapsed = self.clock() - self._started
        count = f"{self.done:>{len(str(self.total))}}/{self.total}"
        return f"[{bar}] {count}  failed {self.failed}  {elapsed:.1f} s"


def failure_reason(error: SimulatorError) -> str:
    """A short label for the failures table."""
    if isinstance(error, RegistrationFailed):
        return f"dps: {error.reason}"
    if isinstance(error, KeysRefused):
        return "dps: both keys refused"
    if isinstance(error, HubRefused):
        return "hub: both connection strings refused"
    if isinstance(error, Unreachable):
        return f"{str(error).split(':', 1)[0]}: unreachable or no answer"
    return type(error).__name__


def busy_delay(attempt: int, jitter: float) -> float:
    """Seconds to wait before retrying after the `attempt`-th CONNACK 3 (1-based): exponential
    from 1 s, capped at `BUSY_DELAY_CAP`, scaled by `jitter` in [0.5, 1] so that devices refused
    together do not come back together."""
    return min(BUSY_DELAY_CAP, 2.0 ** (attempt - 1)) * jitter


async def _while_busy(
    step: Callable[[], Awaitable[Any]], *, sleep: Callable[[float], Awaitable[Any]]
) -> tuple[Any, int]:
    """Run `step`, again after a backoff each time it raises ServerBusy; its result and the
    number of retries. The last ServerBusy propagates after `MAX_BUSY_RETRIES` retries."""
    retries = 0
    while True:
        try:
            return await step(), retries
        except ServerBusy:
            if retries >= MAX_BUSY_RETRIES:
                raise
            retries += 1
            await sleep(busy_delay(retries, random.uniform(0.5, 1.0)))


async def run_device(
    secrets: DeviceSecrets,
    target: Target,
    *,
    messages: int,
    payload: Any,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> DeviceOutcome:
    """Register, connect, send `messages` messages, disconnect; never raises a SimulatorError.
    A CONNACK 3 from DPS or the hub is retried with backoff (`_while_busy`)."""
    from azure.iot.device import Message  # noqa: PLC0415 - heavy SDK

    dps_retries = hub_retries = 0
    try:
        registration, dps_retries = await _while_busy(
            lambda: register(secrets, target, payload=payload), sleep=sleep
        )
        settings = registration.settings(secrets)
        (client, _), hub_retries = await _while_busy(
            lambda: connect(settings, target, connection_retry=False), sleep=sleep
        )
        try:
            for number in range(1, messages + 1):
                body = json.dumps({"deviceId": registration.device_id, "sequence": number})
                await client.send_message(Message(body))  # type: ignore[no-untyped-call]
        finally:
            await client.shutdown()
    except SimulatorError as error:
        return DeviceOutcome(
            registration_id=secrets.registration_id,
            failure=failure_reason(error),
            dps_busy_retries=dps_retries,
            hub_busy_retries=hub_retries,
        )
    rule = registration.payload.get("rule") if isinstance(registration.payload, dict) else None
    return DeviceOutcome(
        registration_id=secrets.registration_id,
        hub=registration.hub,
        rule=rule if isinstance(rule, str) else None,
        provisioning_seconds=registration.seconds,
        dps_busy_retries=dps_retries,
        hub_busy_retries=hub_retries,
    )


async def run_fleet(
    devices: Sequence[DeviceSecrets],
    target: Target,
    *,
    concurrency: int,
    messages: int = 2,
    payload: Any = None,
    progress: Progress | None = None,
    on_outcome: Callable[[int, DeviceOutcome], None] | None = None,
) -> list[DeviceOutcome]:
    """Run every device in this process, at most `concurrency` at a time; outcomes in the order
    of `devices`. `on_outcome(index, outcome)` hears of each device as it finishes."""
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int, secrets: DeviceSecrets) -> DeviceOutcome:
        async with gate:
            outcome = await run_device(secrets, target, messages=messages, payload=payload)
        if progress is not None:
            progress.advance(ok=outcome.failure is None)
        if on_outcome is not None:
            on_outcome(index, outcome)
        return outcome

    outcomes = await asyncio.gather(*(one(i, secrets) for i, secrets in enumerate(devices)))
    if progress is not None:
        progress.finish()
    return list(outcomes)


def spread(count: int, concurrency: int, processes: int | None = None) -> list[tuple[range, int]]:
    """How `count` devices at `concurrency` are shared out: per worker process, the device
    indices it runs (every n-th, so each gets the same mix of ids) and its concurrency. One
    process per `CLIENTS_PER_PROCESS` in-flight devices unless `processes` says otherwise."""
    in_flight = max(1, min(count, concurrency))
    workers = processes or math.ceil(in_flight / CLIENTS_PER_PROCESS)
    workers = max(1, min(workers, in_flight))
    return [
        (range(worker, count, workers), in_flight // workers + (worker < in_flight % workers))
        for worker in range(workers)
    ]


def run_spread(
    devices: Sequence[DeviceSecrets],
    target: Target,
    *,
    concurrency: int,
    messages: int = 2,
    payload: Any = None,
    progress: Progress | None = None,
    processes: int | None = None,
) -> FleetRun:
    """Run the fleet over worker processes as `spread` shares it out (in this process when one
    is enough); outcomes in the order of `devices`."""
    shares = spread(len(devices), concurrency, processes)
    if len(shares) == 1:
        replies = DpsReplies.install()
        before = replies.throttled
        ran = asyncio.run(
            run_fleet(
                devices,
                target,
                concurrency=concurrency,
                messages=messages,
                payload=payload,
                progress=progress,
            )
        )
        return FleetRun(outcomes=tuple(ran), dps_throttled=replies.throttled - before)
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    channel: multiprocessing.Queue[tuple[str, int, Any]] = context.Queue()
    workers = [
        context.Process(
            target=_worker,
            args=(
                _Job(
                    number=number,
                    devices=tuple((index, devices[index]) for index in indices),
                    target=target,
                    concurrency=share,
                    messages=messages,
                    payload=payload,
                ),
                channel,
            ),
            name=f"fleet-worker-{number}",
            daemon=True,
        )
        for number, (indices, share) in enumerate(shares)
    ]
    outcomes: dict[int, DeviceOutcome] = {}
    throttled, reported = 0, 0
    try:
        for worker in workers:
            worker.start()
        while reported < len(workers):
            try:
                kind, number, value = channel.get(timeout=1.0)
            except queue.Empty:
                if all(not worker.is_alive() for worker in workers):
                    break  # a worker died without reporting: its devices are failed below
                continue
            if kind == "outcome":
                outcomes[number] = value
                if progress is not None:
                    progress.advance(ok=value.failure is None)
            else:
                reported += 1
                throttled += value
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join(5)
    if progress is not None:
        progress.finish()
    return FleetRun(
        outcomes=tuple(
            outcomes.get(index)
            or DeviceOutcome(registration_id=secrets.registration_id, failure=WORKER_EXITED)
            for index, secrets in enumerate(devices)
        ),
        dps_throttled=throttled,
    )


@dataclass(frozen=True, kw_only=True)
class _Job:
    """One worker process's share of the fleet (sent to it pickled)."""

    number: int
    devices: tuple[tuple[int, DeviceSecrets], ...]  # (index in the whole fleet, secrets)
    target: Target
    concurrency: int
    messages: int
    payload: Any


def _worker(job: _Job, channel: multiprocessing.Queue[tuple[str, int, Any]]) -> None:
    """A worker process: its devices, each outcome sent as it comes, then DPS's 429 count."""
    quiet_sdk_logs()
    replies = DpsReplies.install()
    indices = [index for index, _ in job.devices]
    asyncio.run(
        run_fleet(
            [secrets for _, secrets in job.devices],
            job.target,
            concurrency=job.concurrency,
            messages=job.messages,
            payload=job.payload,
            on_outcome=lambda at, outcome: channel.put(("outcome", indices[at], outcome)),
        )
    )
    channel.put(("done", job.number, replies.throttled))


def rules_from_log(
    outcomes: Sequence[DeviceOutcome], connection_string: str, *, table_prefix: str, since: datetime
) -> list[DeviceOutcome]:
    """Fill in each successful device's rule from the webhook's registration log (newest wins)."""
    from store.tables import TableStore  # noqa: PLC0415 - the Tables SDK loads only when asked

    store = TableStore(connection_string, table_prefix=table_prefix, timeout_seconds=10.0)
    try:
        records = store.registrations_since(since, limit=max(100, 3 * len(outcomes)))
    finally:
        store.close()
    rules: dict[str, str] = {}
    for record in records:  # newest first
        if record.rule is not None:
            rules.setdefault(record.registration_id.lower(), record.rule)
    return [
        outcome
        if outcome.failure is not None or outcome.rule is not None
        else DeviceOutcome(
            registration_id=outcome.registration_id,
            hub=outcome.hub,
            rule=rules.get(outcome.registration_id.lower()),
            provisioning_seconds=outcome.provisioning_seconds,
            dps_busy_retries=outcome.dps_busy_retries,
            hub_busy_retries=outcome.hub_busy_retries,
        )
        for outcome in outcomes
    ]


def register_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `fleet` to the simulator's subcommands."""
    parser = commands.add_parser(
        "fleet",
        help="derive keys for N devices and provision, connect and run them concurrently",
        description=__doc__.split("\n\n", 1)[1].split("\n\n`summarize`")[0],
        epilog=keys_cli.KEY_SOURCES_HELP + "\nexit codes: 0 all succeeded, 1 any failed, 2 usage",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--provisioning-host", default=None, help=f"default {DEFAULT_DPS_HOST} (--local: its own)"
    )
    parser.add_argument("--id-scope", metavar="SCOPE", help="required unless --local")
    parser.add_argument("--count", type=int, required=True, metavar="N")
    ids = parser.add_mutually_exclusive_group()
    ids.add_argument(
        "--id-template",
        action="append",
        metavar="T",
        help="registration id with {n} for the device's number; repeat to use several in turn "
        "(--local default: " + ", ".join(LOCAL_TEMPLATES) + ")",
    )
    ids.add_argument(
        "--prefix", metavar="P", help=f"registration ids P1..PN (default {DEFAULT_PREFIX})"
    )
    parser.add_argument(
        "--group", metavar="ID", help="--local: the enrollment group (default: first custom one)"
    )
    parser.add_argument("--group-primary-key", metavar="KEY", help="see 'group keys' below")
    parser.add_argument("--group-secondary-key", metavar="KEY", help="see 'group keys' below")
    parser.add_argument("--group-keys-file", type=Path, metavar="FILE", help="see 'group keys'")
    parser.add_argument("--concurrency", type=int, default=100, metavar="C", help="default 100")
    parser.add_argument(
        "--processes",
        type=int,
        metavar="P",
        help=f"worker processes (default: one per {CLIENTS_PER_PROCESS} in-flight devices)",
    )
    parser.add_argument("--messages", type=int, default=2, metavar="N", help="per device")
    parser.add_argument("--payload", metavar="JSON", help="DPS registration payload (JSON)")
    parser.add_argument(
        "--registration-log",
        action="store_true",
        help=f"read rules from the webhook's Table log ({STORAGE_SETTING} in the environment)",
    )
    parser.add_argument("--table-prefix", default="dps", help="the store's table prefix")
    add_target_arguments(parser)
    parser.set_defaults(command=_command)


def fleet_ids(templates: Sequence[str], count: int) -> list[str]:
    """Registration ids 1..count: each template in turn with `{n}` as the zero-padded number."""
    width = len(str(count))
    return [
        templates[(number - 1) % len(templates)].replace("{n}", f"{number:0{width}d}")
        for number in range(1, count + 1)
    ]


def fleet_devices(
    *,
    host: str,
    id_scope: str,
    templates: Sequence[str],
    count: int,
    primary: str,
    secondary: str,
) -> list[DeviceSecrets]:
    """The fleet's registration ids with their derived keys."""
    return [
        derive_secrets(host, id_scope, registration_id, primary, secondary)
        for registration_id in fleet_ids(templates, count)
    ]


def _templates(args: argparse.Namespace) -> tuple[str, ...]:
    if args.id_template:
        for template in args.id_template:
            if "{n}" not in template:
                raise UsageError(f"--id-template {template!r}: expected {{n}} for the number")
        return tuple(args.id_template)
    if args.prefix is not None:
        return (args.prefix + "{n}",)
    return LOCAL_TEMPLATES if args.local else (DEFAULT_PREFIX + "{n}",)


def _dps_and_keys(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, str, str, str]:
    """DPS host, ID scope and the group's two keys: what the arguments give, and with --local the
    rest from the local cloud (giving other keys is how a drill tries a factory's stale keys)."""
    keys = keys_cli.group_keys(args, env)  # the same sources and checks as derive-key
    if len(keys) == 1:
        raise UsageError(
            "--group-primary-key/--group-secondary-key: give both group keys or neither "
            f"(flags, --group-keys-file or {keys_cli.ENV_GROUP_PRIMARY_KEY}/"
            f"{keys_cli.ENV_GROUP_SECONDARY_KEY})"
        )
    if args.local:
        group = local_group(args.state_dir, args.group)
        if keys:
            print(
                "fleet: using the group keys given (flags, file or environment), not those of "
                f"the local cloud's group {group.group_id!r}",
                file=sys.stderr,
            )
        return (
            args.provisioning_host or group.provisioning_host,
            args.id_scope or group.id_scope,
            keys.get("primary", group.primary_key),
            keys.get("secondary", group.secondary_key),
        )
    if args.group is not None:
        raise UsageError("--group: only with --local (otherwise give the group's keys)")
    if args.id_scope is None:
        raise UsageError("--id-scope: required (or --local to take it from the local cloud)")
    if not keys:
        raise UsageError(
            "--group-primary-key/--group-secondary-key: both group keys are needed "
            f"(flags or {keys_cli.ENV_GROUP_PRIMARY_KEY}/{keys_cli.ENV_GROUP_SECONDARY_KEY}), "
            "or --local to take them from the local cloud"
        )
    return (
        args.provisioning_host or DEFAULT_DPS_HOST,
        args.id_scope,
        keys["primary"],
        keys["secondary"],
    )


def _command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    try:
        if args.count < 1 or args.concurrency < 1 or args.messages < 0:
            raise UsageError("--count/--concurrency: expected 1 or more; --messages: 0 or more")
        if args.processes is not None and args.processes < 1:
            raise UsageError("--processes: expected 1 or more")
        templates = _templates(args)
        host, id_scope, primary, secondary = _dps_and_keys(args, env)
        storage = env.get(STORAGE_SETTING) if args.registration_log else None
        if args.registration_log and not storage and args.local:
            storage = local_storage(env)  # the local cloud's: local.settings.json
        if args.registration_log and not storage:
            raise UsageError(
                f"--registration-log: set {STORAGE_SETTING} to the storage account"
                + (" (the checkout's local.settings.json has none)" if args.local else "")
            )
        try:
            devices = fleet_devices(
                host=host,
                id_scope=id_scope,
                templates=templates,
                count=args.count,
                primary=primary,
                secondary=secondary,
            )
        except RegistrationIdError as error:
            option = "--id-template" if args.id_template else "--prefix"
            raise UsageError(f"{option}: {error.problem}") from None
        payload = parse_payload(args.payload)
        target = target_from(args)
    except UsageError as error:
        print(f"fleet: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except SimulatorError as error:
        print(f"fleet: error: {error}", file=sys.stderr)
        return error.exit_code
    quiet_sdk_logs()
    since = datetime.now(UTC)
    started = time.monotonic()
    workers = len(spread(args.count, args.concurrency, args.processes))
    print(
        f"fleet: {args.count} device(s) ({devices[0].registration_id}, ...) against "
        f"{target.describe()}, at most {args.concurrency} at a time"
        + (f" over {workers} worker processes" if workers > 1 else ""),
        file=sys.stderr,
    )
    run = run_spread(
        devices,
        target,
        concurrency=args.concurrency,
        messages=args.messages,
        payload=payload,
        progress=Progress(len(devices), sys.stderr),
        processes=args.processes,
    )
    seconds = time.monotonic() - started
    outcomes: Sequence[DeviceOutcome] = run.outcomes
    if storage:
        outcomes = rules_from_log(outcomes, storage, table_prefix=args.table_prefix, since=since)
    summary = summarize(outcomes, seconds=seconds, dps_throttled=run.dps_throttled)
    print(render(summary), end="")
    return EXIT_OK if summary.failed == 0 else EXIT_FAILED
