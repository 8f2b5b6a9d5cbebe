"""The webhook under arbitrary input (issue #14): bytes, JSON with lone surrogates, NaN, Infinity and
overflowing numbers, deep nesting, thousands of hubs, over-long and invisible ids, with the store up
or down. Invariants, for every input: no 5xx, no exception escapes, a standard-JSON answer, a hub
only from linkedHubs, an answer within the time budget, and memory bounded (per call, and in the
engine's caches).

Bounded in time: a fixed number of examples, each with a deadline; part of ``make test``.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocation import engine, hashing, load_policy
from store.base import StoreUnavailable
from store.memory import MemoryStore
from store.runtime import Runtime
from store.settings import StoreSettings
from tests.strategies import allocation_requests
from webhook.handler import AllocateHandler

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SECONDS_PER_CALL = 1.0  # far above what any call takes; the decision budget is 0.25 s
PEAK_BYTES_PER_CALL = 24 * 2**20  # a 256 KiB body parsed, checked and summarised fits easily

POLICY = load_policy(
    """
[defaults]
unmatched = "hash"
[weights]
"heavy*" = 5
"drain*" = 0
[[rules]]
name = "backtracking"
deny = "nested quantifiers"
[rules.match]
registration_id = { regex = "(a+)+$" }
[[rules]]
name = "payload regex"
hubs = ["*"]
strategy = "sticky"
[rules.match]
payload = { "fw" = { matches = "(x+x+)+y" } }
[rules.payload]
echo = "{payload.fw}"
[[rules]]
name = "echo"
hubs = ["heavy*", "*"]
strategy = "static"
[rules.match]
registration_id = { prefix = "echo" }
[rules.initial_twin]
tags = { id = "{registration_id}", group = "{enrollment_group}" }
desired = { value = "{payload.value}" }
[rules.payload]
all = "{payload.value}"
""",
    source="fuzz.toml",
)

JSON_TEXT = st.text(st.characters(exclude_categories=()), max_size=12)  # surrogates included
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()  # NaN and infinities included
    | JSON_TEXT
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(JSON_TEXT, inner, max_size=4),
    max_leaves=16,
)


def nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


@st.composite
def documents(draw: st.DrawFn) -> Any:
    """Well-formed requests bent out of shape, one field at a time."""
    document: dict[str, Any] = draw(allocation_requests())
    context = document["deviceRuntimeContext"]
    change = draw(st.sampled_from(["none", "id", "hubs", "many hubs", "payload", "deep", "field"]))
    if change == "id":
        context["registrationId"] = draw(
            JSON_TEXT | st.text(min_size=120, max_size=300) | st.just("a" * 40 + "-") | VALUES
        )
    elif change == "hubs":
        document["linkedHubs"] = draw(st.lists(JSON_TEXT | VALUES, max_size=6))
    elif change == "many hubs":
        count = draw(st.integers(min_value=1, max_value=3000))
        document["linkedHubs"] = [f"heavy-{n}.azure-devices.net" for n in range(count)]
    elif change == "payload":
        context["payload"] = draw(st.fixed_dictionaries({"fw": VALUES, "value": VALUES}) | VALUES)
    elif change == "deep":
        context["payload"] = {"value": nested(draw(st.integers(0, 80)), draw(SCALARS))}
    elif change == "field":
        target = draw(st.sampled_from([document, context]))
        target[draw(st.sampled_from(sorted(target) or ["x"]))] = draw(VALUES)
    if draw(st.booleans()):
        context["payload"] = context.get("payload") or {"fw": "x" * 28 + "-", "value": 1}
    return document


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Bytes as they could arrive: JSON text (escaped or raw surrogates), or anything at all."""
    kind = draw(st.sampled_from(["ascii", "raw", "bytes", "tokens"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    document = draw(documents())
    if kind == "ascii":
        return json.dumps(document).encode("ascii")
    text = json.dumps(document, ensure_ascii=False)
    if kind == "tokens":
        token = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999"]))
        text = text.replace("null", token, 1) if "null" in text else f"[{token}]"
    return text.encode("utf-8", "surrogatepass")  # lone surrogates as raw ED A0 80-style bytes


@pytest.fixture(scope="module")
def traced() -> Iterator[None]:
    """tracemalloc for the whole module (peaks are reset per call)."""
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


class FlakyStore(MemoryStore):
    """A store that is up or down, as the example decides."""


@settings(
    max_examples=300,
    deadline=None,  # the per-call bound is asserted below, with tracemalloc's cost excluded
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(bodies(), st.booleans())
def test_any_input_gets_a_bounded_standard_answer(
    traced: None, body: bytes, store_down: bool
) -> None:
    """No 5xx, no exception, standard JSON, a linked hub, within the time and memory budgets."""
    store = FlakyStore()
    if store_down:
        store.fail_with = StoreUnavailable("table service unreachable")
    runtime = Runtime(
        store=store,
        hubs=lambda hub: None,
        settings=StoreSettings(timeout_seconds=0.5, replay_key=b"k" * 32),
        clock=lambda: NOW,
    )
    webhook = AllocateHandler(policy=lambda: POLICY, runtime=lambda: runtime)
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    answer = webhook.handle(body)
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] - before

    assert answer.status in (200, 400, 429), answer
    encoded = json.dumps(answer.body, allow_nan=False).encode("utf-8")
    assert json.loads(encoded) == answer.body
    if answer.status == 200:
        assert answer.body["iotHubHostName"] in json.loads(body)["linkedHubs"]
    if answer.status == 429:
        assert store_down or "time" in answer.body["message"]
    assert elapsed < SECONDS_PER_CALL
    assert peak < PEAK_BYTES_PER_CALL
    assert hashing.cached_bytes() <= hashing.RING_CACHE_BYTES + hashing.HUB_POINTS_CACHE_BYTES
    assert engine._candidate_cache.bytes <= engine.CANDIDATES_CACHE_BYTES
