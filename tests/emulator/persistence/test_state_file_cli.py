"""`python -m emulator run --state-dir` refuses a state.json it did not write, and keeps it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emulator.__main__ import main
from tests.emulator.e2e.harness import options

BIND = "127.46.7.1"


@pytest.mark.parametrize(
    ("document", "reported"),
    [
        ({"name": "my-app", "version": "2.0"}, "format: "),
        ({"format": "azure-iot-emulator-state", "version": 99}, "version: "),
        ([1, 2, 3], "top level: expected a JSON object"),
    ],
    ids=["foreign", "newer", "not-an-object"],
)
def test_run_refuses_a_foreign_state_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: object, reported: str
) -> None:
    """Exit 2 naming the file and what is wrong; the file's bytes are unchanged."""
    settings = options(tmp_path, BIND)
    settings.state_dir.mkdir()
    foreign = settings.state_dir / "state.json"
    foreign.write_text(json.dumps(document))
    before = foreign.read_bytes()
    argv = ["run", "--config", str(settings.config_path), "--state-dir", str(settings.state_dir)]
    assert main([*argv, "--bind", BIND, "--mqtt-port", "0", "--service-port", "0"]) == 2
    assert f"error: {foreign}: {reported}" in capsys.readouterr().err
    assert foreign.read_bytes() == before
