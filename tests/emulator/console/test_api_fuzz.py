"""The console's API under arbitrary input, over HTTP on 127.54.2.1: never a 5xx, never a crash."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import function_app
from store.memory import MemoryStore
from store.runtime import Runtime
from tests.emulator.e2e.harness import RunningEmulator, emulator_toml, options
from tests.strategies import json_values

pytestmark = pytest.mark.e2e

BIND = "127.54.2.1"
HUB = "toasters.azure-devices.net"
KEY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
CONFIG = emulator_toml(
    hubs=[HUB],
    groups=[
        {
            "id": "contoso-custom",
            "primary_key": KEY,
            "secondary_key": KEY,
            "allocation": "custom",
            "webhook_url": f"http://{BIND}:7071/api/allocate?code=fuzz-key",
            "hubs": [HUB],
        }
    ],
)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, httpx.Client]]:
    """A running local cloud (hosted app, in-memory store) and a client of its console."""
    run_options = options(
        tmp_path_factory.mktemp("fuzz"),
        BIND,
        CONFIG,
        host_functions=True,
        function_key="fuzz-key",
        functions_bind=BIND,
        service_port=0,
    )
    with (
        function_app.configured(
            settings={}, runtime=Runtime(store=MemoryStore(), hubs=lambda hub: None)
        ),
        RunningEmulator(run_options) as cloud,
    ):
        cloud.call(
            lambda: cloud.emulator.hub(HUB).upsert_device(
                "dev-1", primary_key=KEY, secondary_key=KEY, twin=None, now=time.time()
            )
        )
        assert cloud.emulator.console is not None
        url = cloud.emulator.console.url
        root, token = url.split("?token=")
        with httpx.Client(
            base_url=root, headers={"Authorization": f"Bearer {token}"}, timeout=20
        ) as client:
            yield root, client


ROUTES = [
    ("POST", "api/policy/decide"),
    ("POST", "api/policy/moves"),
    ("PATCH", f"api/twins/{HUB}/dev-1"),
    ("PATCH", f"api/twins/{HUB}/nobody"),
    ("POST", f"api/methods/{HUB}/dev-1"),
    ("PUT", "api/admin/faults/dps"),
    ("POST", f"api/admin/hubs/{HUB}/devices/dev-1/c2d"),
    ("POST", "api/admin/enrollments/group/contoso-custom/regenerate-key"),
    ("GET", "api/exchanges"),
    ("GET", f"api/telemetry/{HUB}/dev-1"),
    ("GET", "api/log/devices/dev-1"),
]

bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.dictionaries(
        st.sampled_from(
            [
                "registration_id",
                "payload",
                "enrollment",
                "current_hub",
                "template",
                "count",
                "add",
                "drain",
                "tags",
                "desired",
                "etag",
                "method_name",
                "timeout",
                "body",
                "properties",
                "slot",
                "throttle_seconds",
            ]
        ),
        json_values,
        max_size=6,
    ).map(lambda value: json.dumps(value).encode()),
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(route=st.sampled_from(ROUTES), body=bodies, query=st.text(max_size=40))
def test_any_body_or_query_gets_an_answer_below_500(
    console: tuple[str, httpx.Client], route: tuple[str, str], body: bytes, query: str
) -> None:
    """Arbitrary bytes, JSON and near-miss fields: a JSON answer, 4xx when refused, no 5xx."""
    _, client = console
    method, path = route
    if path.endswith("regenerate-key") and b"primary" in body:
        return  # a real rotation is fine, but keep the group's key for the other examples
    answer = client.request(method, f"{path}?limit={quote(query)}", content=body)
    assert answer.status_code < 500, (method, path, answer.text)
    document: Any = answer.json()
    assert isinstance(document, dict)
    if answer.status_code >= 400:
        assert document["error"]["message"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=st.text(max_size=60))
def test_any_path_is_404_or_an_answer(console: tuple[str, httpx.Client], path: str) -> None:
    """Unknown paths, odd characters, traversal attempts: never a 5xx, never a file outside."""
    _, client = console
    answer = client.get("static/" + quote(path, safe="/."))
    if answer.status_code in (307, 308):  # Starlette's slash redirect: it stays under /static/
        assert httpx.URL(answer.headers["location"]).path.startswith("/static/"), answer.headers
        return
    assert answer.status_code in (200, 404), answer.text
    if answer.status_code == 200:
        assert path in ("console.js", "console.css", "icon.svg")
