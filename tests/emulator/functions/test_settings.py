"""local.settings.json as `func start` reads it: Values as strings, first-run copy, environment wins."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devtools.checkout import CHECKOUT
from emulator.functions.settings import (
    SAMPLE_FILE,
    LocalSettingsError,
    ensure_settings,
    merged,
    read_values,
)


def settings_file(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps(document))
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_values_of_the_checkouts_sample_are_read() -> None:
    """The sample the checkout ships is accepted: every value a string, the policy setting set."""
    values = read_values(CHECKOUT / SAMPLE_FILE)
    assert values
    assert all(isinstance(value, str) for value in values.values())
    assert "ALLOCATION_POLICY_FILE" in values


def test_values_come_back_as_given(tmp_path: Path) -> None:
    """String values are returned as they are; a file without Values has none."""
    path = settings_file(
        tmp_path, {"IsEncrypted": False, "Values": {"A": "1", "AzureWebJobsStorage": ""}}
    )
    assert read_values(path) == {"A": "1", "AzureWebJobsStorage": ""}
    assert read_values(settings_file(tmp_path, {"Host": {"LocalHttpPort": 7071}})) == {}


@pytest.mark.parametrize("value", [7071, True, None, 1.5, ["a"], {"nested": "x"}])
def test_a_value_that_is_not_a_string_is_refused_naming_the_key(
    tmp_path: Path, value: object
) -> None:
    """Numbers, booleans, null, lists and objects are refused naming file and key, as Core Tools does."""
    path = settings_file(tmp_path, {"Values": {"GOOD": "x", "STORE_TIMEOUT_SECONDS": value}})
    with pytest.raises(LocalSettingsError) as caught:
        read_values(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: Values.STORE_TIMEOUT_SECONDS: expected a string")
    assert "GOOD" not in message


def test_the_refusal_never_quotes_the_value(tmp_path: Path) -> None:
    """A refused value is named by its key only, never shown."""
    path = settings_file(tmp_path, {"Values": {"FUNCTION_KEY": 918273645}})
    with pytest.raises(LocalSettingsError) as caught:
        read_values(path)
    assert "FUNCTION_KEY" in str(caught.value)
    assert "918273645" not in str(caught.value)


def test_an_encrypted_file_is_refused(tmp_path: Path) -> None:
    """IsEncrypted: true is refused (only Core Tools can decrypt it), naming the file."""
    path = settings_file(tmp_path, {"IsEncrypted": True, "Values": {"A": "b"}})
    with pytest.raises(LocalSettingsError, match=r"IsEncrypted: true.*func settings decrypt"):
        read_values(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"Values": {"A": "b",}}', "expected JSON"),
        ("", "expected JSON"),
        ('["Values"]', "expected a JSON object with a Values object"),
        ('{"Values": ["A", "b"]}', "Values: expected an object of strings"),
    ],
)
def test_a_file_that_is_not_a_settings_object_is_named(
    tmp_path: Path, text: str, expected: str
) -> None:
    """Bad JSON, a non-object and a non-object Values each give an error naming the file."""
    path = tmp_path / "local.settings.json"
    path.write_text(text)
    with pytest.raises(LocalSettingsError) as caught:
        read_values(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    """A file that cannot be read gives an error naming it."""
    path = tmp_path / "absent.json"
    with pytest.raises(LocalSettingsError, match=r"absent\.json: cannot be read"):
        read_values(path)


def test_ensure_settings_copies_the_sample_0600_when_missing(tmp_path: Path) -> None:
    """On first run the sample is copied into place, owner-only, and True is returned."""
    sample = tmp_path / SAMPLE_FILE
    sample.write_text('{"Values": {"A": "b"}}\n')
    sample.chmod(0o644)
    path = tmp_path / "local.settings.json"
    assert ensure_settings(path, sample) is True
    assert path.read_text() == sample.read_text()
    assert mode(path) == 0o600


def test_ensure_settings_leaves_an_existing_file_alone(tmp_path: Path) -> None:
    """An existing settings file is neither rewritten nor re-moded, even without a sample."""
    path = tmp_path / "local.settings.json"
    path.write_text('{"Values": {"Mine": "kept"}}')
    path.chmod(0o640)
    assert ensure_settings(path, tmp_path / "no-sample.json") is False
    assert (path.read_text(), mode(path)) == ('{"Values": {"Mine": "kept"}}', 0o640)


def test_ensure_settings_names_a_missing_sample(tmp_path: Path) -> None:
    """No settings file and no sample: an error naming the sample, and nothing created."""
    path = tmp_path / "local.settings.json"
    with pytest.raises(LocalSettingsError, match=r"no-sample\.json: cannot be read"):
        ensure_settings(path, tmp_path / "no-sample.json")
    assert not path.exists()


_names = st.sampled_from(["AzureWebJobsStorage", "ALLOCATION_POLICY_FILE", "A", "B", "C"])
_settings = st.dictionaries(_names, st.text(max_size=5))


@given(_settings, _settings)
def test_merged_lets_the_environment_win(values: dict[str, str], environ: dict[str, str]) -> None:
    """Every environment variable keeps its value; the file fills in only what it leaves unset."""
    seen = merged(values, environ)
    assert set(seen) == set(values) | set(environ)
    for name, value in seen.items():
        assert value == (environ[name] if name in environ else values[name])
