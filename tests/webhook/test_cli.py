"""The operator's policy tools: check a file, ask where a device goes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures import FIXTURES
from webhook.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = str(ROOT / "examples" / "tutorial-policy.toml")
REQUEST = str(FIXTURES / "webhook" / "initial-group-request.json")


def test_check_valid_policy(capsys: pytest.CaptureFixture[str]) -> None:
    """A valid policy is reported valid with its rule count, exit 0."""
    assert main(["check", TUTORIAL]) == 0
    assert "tutorial-policy.toml: valid, 2 rules" in capsys.readouterr().out


def test_check_invalid_policy_names_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid policy exits 2 with file, rule and field on stderr."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rules]]\nname = "x"\nhubs = "a"\n')
    assert main(["check", str(bad)]) == 2
    assert "bad.toml: rules[0] (x).hubs: expected a non-empty list" in capsys.readouterr().err


def test_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file exits 2 and says it cannot be read."""
    assert main(["check", str(tmp_path / "nope.toml")]) == 2
    assert "cannot be read" in capsys.readouterr().err


def test_decide_from_flags(capsys: pytest.CaptureFixture[str]) -> None:
    """decide prints the rule and the response body DPS would get."""
    code = main(
        [
            "decide",
            TUTORIAL,
            "--registration-id",
            "x-contoso-hpsd-088",
            "--hub",
            "a-toasters-1.net",
            "--hub",
            "a-heatpumps-1.net",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "rule 'heat pumps'" in out
    assert json.loads(out[out.index("{") :])["iotHubHostName"] == "a-heatpumps-1.net"


def test_decide_from_request_file_and_denial(capsys: pytest.CaptureFixture[str]) -> None:
    """A request file is decided; a denied device exits 1 with the reason."""
    assert main(["decide", TUTORIAL, "--request", REQUEST]) == 0
    assert main(["decide", TUTORIAL, "--registration-id", "other", "--hub", "h"]) == 1
    assert "Unrecognized device registration" in capsys.readouterr().out


def test_decide_needs_a_device() -> None:
    """decide without a request or id and hub is a usage error."""
    with pytest.raises(SystemExit) as raised:
        main(["decide", TUTORIAL])
    assert raised.value.code == 2
