"""The Azure Functions app (Python v2 programming model): the DPS custom allocation webhook.

Only translation happens here: ``func.HttpRequest`` -> bytes -> ``webhook`` handler -> ``Answer``
-> ``func.HttpResponse``. Importing this module does no I/O: settings are read and the policy file
is loaded on the first request, then cached for the life of the worker.

Functions:
    allocate                POST /api/allocate                               auth FUNCTION (DPS passes ?code=)
    device_lifecycle        Event Grid: IoT Hub device created/deleted/connected/disconnected
    admin_get_device        GET  /api/devices/{registrationId}               auth ADMIN
    admin_list_devices      GET  /api/devices?hub=&status=                   auth ADMIN
    admin_retire_device     POST /api/devices/{registrationId}/retire        auth ADMIN
    admin_reinstate_device  POST /api/devices/{registrationId}/reinstate     auth ADMIN

The last five live in ``lifecycle_functions.py`` (a Blueprint) and share the store runtime with
``allocate``: one set of Table clients per worker, built on first use.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import azure.functions as func

import lifecycle_functions
from store.runtime import Runtime, get_runtime, set_runtime, use_settings
from webhook.handler import AllocateHandler, Answer
from webhook.policy_source import PolicySource
from webhook.readiness import Problem, check_readiness

APP_ROOT = Path(__file__).resolve().parent

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(lifecycle_functions.bp)


_settings: Mapping[str, str] = os.environ


@functools.cache
def _policy_source() -> PolicySource:
    return PolicySource(_settings, root=APP_ROOT)


@functools.cache
def _allocate_handler() -> AllocateHandler:
    return AllocateHandler(policy=_policy_source().get, runtime=get_runtime)


def reset() -> None:
    """Forget what the app built from its settings (handler, policy, store runtime): the next
    invocation builds it again. For hosts and tests that change settings in-process."""
    _policy_source.cache_clear()
    _allocate_handler.cache_clear()
    set_runtime(None)


def readiness() -> list[Problem]:
    """What would make every registration fail right now (policy, settings, storage), for a local
    host to refuse to start with; an empty list when the app can serve."""
    return check_readiness(policy=_policy_source().get, runtime=get_runtime)


@contextlib.contextmanager
def configured(*, settings: Mapping[str, str], runtime: Runtime | None = None) -> Iterator[None]:
    """Serve this process's app from ``settings`` instead of ``os.environ``, and with ``runtime``
    as its store when given (the local host, the demo, tests); afterwards the environment applies
    again."""
    global _settings  # noqa: PLW0603 -- the one settings source, swapped only here
    reset()
    _settings = settings
    use_settings(settings)
    if runtime is not None:
        set_runtime(runtime)
    try:
        yield
    finally:
        _settings = os.environ
        use_settings(None)
        reset()


@app.route(route="allocate", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def allocate(req: func.HttpRequest) -> func.HttpResponse:
    """DPS custom allocation: which hub, which initial twin, which payload."""
    return _http_response(_allocate_handler().handle(req.get_body()))


def _http_response(answer: Answer) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(answer.body, separators=(",", ":")),
        status_code=answer.status,
        mimetype="application/json",
    )
