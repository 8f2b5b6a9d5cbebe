"""The Azure Functions app (Python v2 programming model): the DPS custom allocation webhook.

Only translation happens here: ``func.HttpRequest`` -> bytes -> ``webhook`` handler -> ``Answer``
-> ``func.HttpResponse``. Importing this module does no I/O: settings are read and the policy file
is loaded on the first request, then cached for the life of the worker.

Functions:
    allocate   POST /api/allocate   auth FUNCTION (DPS passes the key as ?code=)
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import azure.functions as func

from webhook.handler import AllocateHandler, Answer
from webhook.policy_source import PolicySource

APP_ROOT = Path(__file__).resolve().parent

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@functools.cache
def _allocate_handler() -> AllocateHandler:
    return AllocateHandler(policy=PolicySource(os.environ, root=APP_ROOT).get)


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
