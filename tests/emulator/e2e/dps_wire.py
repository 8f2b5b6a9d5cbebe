"""DPS test tools for the e2e modules: a wire tap on DPS and an emulator that has one.

The scripted webhook they call is `tests.scripted_webhook.ScriptedWebhook`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from emulator.activity import ActivityEvent
from emulator.in_process import BackgroundEmulator
from tests.emulator.e2e.harness import options


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
