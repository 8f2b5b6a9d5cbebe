"""`simulator.local.local_storage`: `fleet --local --registration-log` finds the storage account
as `make up` gives it to the hosted app: the environment's setting, else local.settings.json."""

from __future__ import annotations

import json
from pathlib import Path

from simulator.local import local_storage

AZURITE = "UseDevelopmentStorage=true"


def settings(tmp_path: Path, values: object) -> Path:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    return path


def test_the_file_gives_it_and_the_environment_wins(tmp_path: Path) -> None:
    path = settings(tmp_path, {"AzureWebJobsStorage": AZURITE})
    assert local_storage({}, path) == AZURITE
    assert local_storage({"AzureWebJobsStorage": "from-env"}, path) == "from-env"


def test_none_without_a_usable_setting(tmp_path: Path) -> None:
    """No file, a file without the setting, an empty setting, a file that is not JSON or whose
    values are not strings: None (the fleet then says to set it)."""
    assert local_storage({}, tmp_path / "missing.json") is None
    assert local_storage({}, settings(tmp_path, {"OTHER": "x"})) is None
    assert local_storage({}, settings(tmp_path, {"AzureWebJobsStorage": ""})) is None
    assert local_storage({}, settings(tmp_path, {"AzureWebJobsStorage": 5})) is None
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert local_storage({}, broken) is None
