"""A stand-in for `func start`, which cannot be installed here: the app served at the webhook URL.

    .venv/bin/python tests/documented/func_start.py WEBHOOK_URL

Like Core Tools run in the app's root, it reads `local.settings.json` (its `Values` under the
environment) and serves `function_app.app`'s routes at the URL's host and port, until SIGINT or
SIGTERM. Core Tools checks no function key; this host does, so it accepts the URL's own `?code=`.
Each request is logged on stdout (`functions host: POST /allocate -> 200`) for the test to count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from urllib.parse import parse_qsl, urlsplit

import function_app
from emulator.foreground import app_settings
from emulator.functions.host import FunctionsHost


def main(url: str) -> int:
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(name)s %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # Core Tools does not show SDK traffic
    parts = urlsplit(url)
    settings, _, _ = app_settings(None, dict(os.environ))
    with function_app.configured(settings=settings):
        host = FunctionsHost(
            function_app.app,
            function_key=dict(parse_qsl(parts.query)).get("code", ""),
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 80,
        )
        asyncio.run(serve(host))
    return 0


async def serve(host: FunctionsHost) -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await host.start()
    print(f"stand-in for func start on {host.base_url}", flush=True)
    await stop.wait()
    await host.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
