"""The allocate handler with its store: latency and CPU per invocation, Azurite beside memory.

Each invocation is what the Functions host runs per DPS call: parse, retired check (one point
read), decide, then the log row and the inventory update as one entity-group transaction. The same
handler runs over the in-memory store (the baseline: the cost of everything but storage) and over
Azure Table storage in Azurite on loopback. CPU is this process's (``time.process_time``), so
Azurite's own work is not counted: the figure is what the store costs the function app. Table
requests are counted on both HTTP clients (`devtools.azurite.RequestCount`), per timed call. The two
stores run in alternating rounds and CPU per call is the median round's, so that a busy moment on
the machine does not fall on one store only.

What each row includes: the handler runs unchanged over every store. The in-memory store's two
calls per invocation run on the store deadline's thread, as they always have (`store.deadline`;
about 0.06 ms of CPU each); the Table store on its own HTTP path (`store.wire`) bounds its own
calls by the deadline and runs them inline, so its figure has no thread in it but both HTTP
requests. The second baseline runs the in-memory store's calls inline too, so that the two
differ by the Table requests alone.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from allocation import load_policy
from devtools.azurite import Azurite, RequestCount
from store.memory import MemoryStore
from store.runtime import Runtime
from store.settings import StoreSettings
from store.tables import TableStore
from webhook.handler import AllocateHandler

ROOT = Path(__file__).resolve().parents[1]
HUBS = ["contoso-toasters-hub.azure-devices.net", "contoso-heatpumps-hub.azure-devices.net"]


class InlineMemoryStore(MemoryStore):
    """The in-memory store with its calls run inline, as the Table store's are: the same handler
    without the deadline's thread (the memory store never blocks, so nothing needs bounding)."""

    bounds_own_calls = True


def bodies(count: int) -> list[bytes]:
    suffixes = ("-contoso-tstrsd-007", "-contoso-hpsd-088")
    return [
        json.dumps(
            {
                "enrollmentGroup": {"enrollmentGroupId": "contoso-custom"},
                "deviceRuntimeContext": {
                    "registrationId": f"unit{n % 50}{suffixes[n % 2]}",
                    "payload": {"fw": "1.2"},
                },
                "linkedHubs": HUBS,
            }
        ).encode()
        for n in range(count)
    ]


def handler_for(store: Any, settings: StoreSettings) -> AllocateHandler:
    policy = load_policy(
        (ROOT / "examples" / "tutorial-policy.toml").read_text(), source="tutorial-policy.toml"
    )
    runtime = Runtime(store=store, hubs=lambda hub: None, settings=settings)
    handler = AllocateHandler(policy=lambda: policy, runtime=lambda: runtime)
    for request in bodies(20):  # warm up: tables created, connections open
        handler.handle(request)
    return handler


def measure(handler: AllocateHandler, requests: list[bytes]) -> tuple[float, list[float]]:
    """CPU ms per call over `requests`, and each call's latency in ms."""
    latencies = []
    cpu_started = time.process_time()
    for request in requests:
        started = time.perf_counter()
        answer = handler.handle(request)
        latencies.append((time.perf_counter() - started) * 1000)
        if answer.status != 200:
            raise RuntimeError(f"unexpected answer {answer.status}: {answer.body}")
    return (time.process_time() - cpu_started) * 1000 / len(requests), latencies


def summary(rounds: list[tuple[float, list[float]]]) -> dict[str, float]:
    """Median CPU per call over the rounds; latency percentiles over every call."""
    latencies = sorted(ms for _, calls in rounds for ms in calls)
    return {
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "cpu": statistics.median(cpu for cpu, _ in rounds),
    }


def run(*, quick: bool = False) -> str:
    requests = bodies(100 if quick else 1000)
    rounds = 5 if quick else 7
    count = RequestCount()
    with Azurite() as azurite:
        settings = StoreSettings(connection_string=azurite.connection_string, table_prefix="bench")
        store = TableStore(
            azurite.connection_string,
            table_prefix=settings.table_prefix,
            timeout_seconds=settings.timeout_seconds,
            session=count.session,
            on_send=count.on_send,
        )
        on_memory = handler_for(MemoryStore(), StoreSettings())
        on_inline = handler_for(InlineMemoryStore(), StoreSettings())
        on_tables = handler_for(store, settings)
        # Alternating rounds, so that a busy moment on the machine falls on every store alike.
        memory_rounds, inline_rounds, table_rounds = [], [], []
        for _ in range(rounds):
            memory_rounds.append(measure(on_memory, requests))
            inline_rounds.append(measure(on_inline, requests))
            count.sent.clear()
            table_rounds.append(measure(on_tables, requests))
            round_trips = len(count.sent) / len(requests)
        store.close()
    memory, inline, tables = summary(memory_rounds), summary(inline_rounds), summary(table_rounds)
    lines = [
        f"### Webhook invocation with its store ({rounds} alternating rounds of {len(requests)} "
        "calls, 50 devices)",
        "",
        "| store | Table requests per call | p50 ms | p99 ms | CPU ms per call | CPU vs baseline |",
        "|---|---:|---:|---:|---:|---:|",
        f"| in memory (baseline) | 0 | {memory['p50']:.2f} | {memory['p99']:.2f} "
        f"| {memory['cpu']:.2f} | 1.0x |",
        f"| in memory, calls inline (no thread) | 0 | {inline['p50']:.2f} | {inline['p99']:.2f} "
        f"| {inline['cpu']:.2f} | {inline['cpu'] / memory['cpu']:.1f}x |",
        f"| Azure Table storage (Azurite) | {round_trips:.1f} | {tables['p50']:.2f} "
        f"| {tables['p99']:.2f} | {tables['cpu']:.2f} | {tables['cpu'] / memory['cpu']:.1f}x |",
        "",
        f"CPU per call is the median of the rounds. The store adds "
        f"{tables['cpu'] - memory['cpu']:.2f} ms of CPU per call; against the in-memory store "
        f"with its calls inline, as the Table store's run "
        f"({'yes' if store.bounds_own_calls else 'no: SDK path'}), "
        f"{tables['cpu'] - inline['cpu']:.2f} ms ({tables['cpu'] / inline['cpu']:.1f}x).",
    ]
    return "\n".join(lines)
