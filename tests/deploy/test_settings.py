"""Every app setting the code reads is documented in docs/settings.md and listed, with a
non-secret value, in local.settings.sample.json."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# A constant named like this holds a setting name (STORAGE_SETTING, SETTING, HUB_SETTING_PREFIX).
_SETTING_CONSTANT = re.compile(r"(^|_)SETTING(_PREFIX)?$")
_ENV_READERS = {"get", "getenv", "pop", "setdefault"}
_ENV_OWNERS = {"environ", "os", "env", "settings"}
_SECRET_VALUE = re.compile(
    r"(AccountKey|SharedAccessKey|InstrumentationKey|code)=(?!<)[^;&\s]+", re.I
)


def setting_names(source: str) -> set[str]:
    """Setting names in Python source: `*_SETTING = "Name"` constants and `env.get("Name")` reads."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = node.value
            if (
                isinstance(value, ast.Constant)
                and isinstance(value.value, str)
                and any(isinstance(t, ast.Name) and _SETTING_CONSTANT.search(t.id) for t in targets)
            ):
                names.add(value.value)
        elif isinstance(node, ast.Call) and node.args:
            func, first = node.func, node.args[0]
            owner = func.value if isinstance(func, ast.Attribute) else None
            owner_name = (
                owner.id
                if isinstance(owner, ast.Name)
                else owner.attr
                if isinstance(owner, ast.Attribute)
                else None
            )
            if (
                isinstance(func, ast.Attribute)
                and func.attr in _ENV_READERS
                and owner_name in _ENV_OWNERS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                names.add(first.value)
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "environ"
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            names.add(node.slice.value)
    return names


def test_scanner_finds_constants_and_reads() -> None:
    """The scanner sees the three forms the code uses, and ignores other strings."""
    source = """
import os
STORAGE_SETTING = "AzureWebJobsStorage"
HUB_SETTING_PREFIX = "IOTHUB_CONNECTION_STRING__"
DEFAULT_PREFIX = "dps"
a = os.environ.get("A_SETTING_READ")
b = os.environ["B_READ"]
c = env.get("C_READ", "x")
d = mapping.get("not-a-setting")
"""
    assert setting_names(source) == {
        "AzureWebJobsStorage",
        "IOTHUB_CONNECTION_STRING__",
        "A_SETTING_READ",
        "B_READ",
        "C_READ",
    }


@pytest.fixture(scope="module")
def app_settings(closure: tuple[frozenset[str], frozenset[str]]) -> set[str]:
    """Every setting name the app's modules read."""
    files, _ = closure
    names: set[str] = set()
    for path in files:
        names |= setting_names((ROOT / path).read_text(encoding="utf-8"))
    return names


def _documented() -> set[str]:
    text = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `([^`]+)` \|", text, re.MULTILINE))


def _sample() -> dict[str, str]:
    values: dict[str, str] = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    return values


def test_app_reads_the_known_settings(app_settings: set[str]) -> None:
    """The scan finds the settings the webhook and the store are known to read."""
    assert {"ALLOCATION_POLICY_FILE", "AzureWebJobsStorage", "RETIRED_CHECK"} <= app_settings


def test_every_setting_is_documented(app_settings: set[str]) -> None:
    """docs/settings.md has a row for each setting (a prefix as `PREFIX<...>`)."""
    documented = _documented()
    missing = sorted(
        name
        for name in app_settings
        if name not in documented
        and not (name.endswith("__") and any(d.startswith(name + "<") for d in documented))
    )
    assert missing == [], f"settings read by the app but not in docs/settings.md: {missing}"


def test_every_setting_is_in_the_sample(app_settings: set[str]) -> None:
    """local.settings.sample.json lists each setting (a prefix by one example key)."""
    sample = _sample()
    missing = sorted(
        name
        for name in app_settings
        if name not in sample
        and not (name.endswith("__") and any(k.startswith(name) for k in sample))
    )
    assert missing == [], f"settings missing from local.settings.sample.json: {missing}"


def test_sample_and_docs_name_nothing_unknown(app_settings: set[str]) -> None:
    """No stale rows: every documented or sample setting is read by the app or is a platform one."""
    platform = {
        "FUNCTIONS_WORKER_RUNTIME",
        "AzureWebJobsFeatureFlags",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "FUNCTIONS_EXTENSION_VERSION",
    }
    prefixes = tuple(name for name in app_settings if name.endswith("__"))
    for name in _documented() | set(_sample()):
        assert name in app_settings | platform or name.startswith(prefixes), name


def test_sample_values_are_not_secrets() -> None:
    """The committed sample holds placeholders: no account keys, access keys or function keys."""
    for name, value in _sample().items():
        assert not _SECRET_VALUE.search(value), f"{name} looks like a secret"
