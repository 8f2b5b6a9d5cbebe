"""The allocate handler with its store: latency and CPU per invocation, Azurite beside memory.

Each invocation is what the Functions host runs per DPS call: parse, retired check (one point
read), decide, then the log row and the inventory update as one entity-group transaction. The same
handler runs over the in-memory store (the baseline: the cost of everything but storage) and over
Azure Table storage in Azurite on loopback. CPU is this process's (``time.process_time``), so
Azurite's own work is not counted: the figure is what the store costs the function app. Table
requests are counted on the HTTP session (a requests response hook), per timed call.
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


def measure(
    store: Any, settings: StoreSettings, requests: list[bytes], sent: list[str] | None = None
) -> dict[str, float]:
    policy = load_policy(
        (ROOT / "examples" / "tutorial-policy.toml").read_text(), source="tutorial-policy.toml"
    )
    runtime = Runtime(store=store, hubs=lambda hub: None, settings=settings)
    handler = AllocateHandler(policy=lambda: policy, runtime=lambda: runtime)
    for request in requests[:20]:  # warm up: tables created, connections open
        handler.handle(request)
    latencies = []
    if sent is not None:
        sent.clear()
    cpu_started = time.process_time()
    for request in requests:
        started = time.perf_counter()
        answer = handler.handle(request)
        latencies.append((time.perf_counter() - started) * 1000)
        if answer.status != 200:
            raise RuntimeError(f"unexpected answer {answer.status}: {answer.body}")
    cpu_ms = (time.process_time() - cpu_started) * 1000 / len(requests)
    latencies.sort()
    return {
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "cpu": cpu_ms,
        "round_trips": len(sent) / len(requests) if sent is not None else 0.0,
    }


def run(*, quick: bool = False) -> str:
    requests = bodies(100 if quick else 1000)
    memory = measure(MemoryStore(), StoreSettings(), requests)
    count = RequestCount()
    with Azurite() as azurite:
        settings = StoreSettings(connection_string=azurite.connection_string, table_prefix="bench")
        store = TableStore(
            azurite.connection_string,
            table_prefix=settings.table_prefix,
            timeout_seconds=settings.timeout_seconds,
            session=count.session,
            http=count.http,
        )
        tables = measure(store, settings, requests, count.sent)
    lines = [
        f"### Webhook invocation with its store ({len(requests)} calls, 50 devices)",
        "",
        "| store | Table requests per call | p50 ms | p99 ms | CPU ms per call | CPU vs baseline |",
        "|---|---:|---:|---:|---:|---:|",
        f"| in memory (baseline) | 0 | {memory['p50']:.2f} | {memory['p99']:.2f} "
        f"| {memory['cpu']:.2f} | 1.0x |",
        f"| Azure Table storage (Azurite) | {tables['round_trips']:.1f} | {tables['p50']:.2f} "
        f"| {tables['p99']:.2f} | {tables['cpu']:.2f} | {tables['cpu'] / memory['cpu']:.1f}x |",
        "",
        f"The store adds {tables['cpu'] - memory['cpu']:.2f} ms of CPU per call.",
    ]
    return "\n".join(lines)
