"""DPS test tools for the e2e modules: a scripted webhook over real HTTP and a wire tap on DPS."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from emulator.activity import ActivityEvent
from emulator.in_process import BackgroundEmulator
from tests.emulator.e2e.harness import options

Reply = tuple[int, dict[str, Any] | None]  # (HTTP status, JSON body or no body)


class WebhookServer:
    """A real HTTP server standing in for the Functions app: answers scripted replies per
    registration id and records the AllocationRequests it got."""

    def __init__(self, bind: str) -> None:
        self.replies: dict[str, list[Reply]] = {}
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append(body)
                script = owner.replies.get(
                    body["deviceRuntimeContext"]["registrationId"], [(404, None)]
                )
                status, answer = script.pop(0) if len(script) > 1 else script[0]
                data = json.dumps(answer).encode() if answer is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer((bind, 0), Handler)
        self.url = f"http://{bind}:{self.server.server_address[1]}/api/allocate?code=secret-key"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class WireTap:
    """Every reply DPS sends, exactly as it goes on the wire (from the emulator's activity)."""

    def __init__(self) -> None:
        self.replies: list[tuple[str, str, dict[str, Any]]] = []  # (client id, topic, body)

    def __call__(self, event: ActivityEvent) -> None:
        if event.kind == "dps.reply" and isinstance(event.fields["body"], dict):
            fields = event.fields
            self.replies.append((fields["client_id"], fields["topic"], fields["body"]))

    def final_body(self, registration_id: str) -> dict[str, Any]:
        return [b for c, _, b in self.replies if c == registration_id][-1]


def tap(emulator: BackgroundEmulator) -> WireTap:
    """The wire tap listening on the emulator's DPS."""
    return TAPS[id(emulator)]


TAPS: dict[int, WireTap] = {}


@contextmanager
def tapped_emulator(state: Path, bind: str, config: str) -> Iterator[BackgroundEmulator]:
    """An emulator on ``bind`` with webhook retries sped up and a wire tap on its DPS."""
    with BackgroundEmulator(options(state, bind, config, time_scale=0.001)) as running:
        wire = WireTap()
        running.call(lambda: running.emulator.activity.listen(wire))
        TAPS[id(running)] = wire
        try:
            yield running
        finally:
            TAPS.pop(id(running), None)
