"""What `func azure functionapp publish` ships: .funcignore, requirements.txt and host.json agree
with what the app imports.

The app's modules come from the `closure` fixture (conftest.py): the repo files in `sys.modules`
after a fresh `import function_app`, plus every import statement in them followed through the repo.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
from functools import cache
from pathlib import Path

import pathspec
import pytest

ROOT = Path(__file__).resolve().parents[2]

# Development-only paths that must never be deployed.
MUST_EXCLUDE = ("tests/", "emulator/", "simulator/", "bench/", "node_modules/", "demo/")
# Dependencies the app imports that requirements.txt does not pin yet, each with the reason.
# Remove an entry when requirements.txt pins it.
KNOWN_UNPINNED: dict[str, str] = {}  # distribution -> why it may stay unpinned
# Pinned without a direct import, each with the reason.
PINNED_COMPANIONS = {"six": "azure-iot-hub 2.7.0 imports six without declaring it"}
DEV_ONLY = ("pytest", "hypothesis", "mypy", "ruff", "azure-iot-device", "cryptography")


# --- .funcignore ----------------------------------------------------------------------------------

# Files the documented steps create in the app's folder, each holding a key, a token or a
# connection string: `make up` / the emulator (state directory, config with group keys, app
# settings), the simulator (device secrets and settings), docs/deploy.md (az output with keys).
SECRET_FILES = (
    ".emulator/ca-key.pem",
    ".emulator/server-key.pem",
    ".emulator/admin-token",
    ".emulator/master-key",
    ".emulator/function-key",
    ".emulator/hubs.json",
    ".emulator/state.json",
    ".emulator/azurite/__azurite_db_table__.json",
    "emulator.local.toml",
    "local.settings.json",
    "secrets.json",
    "settings.json",
    "group-keys.json",
    "enrollment.json",
    "devices.jsonl",
)


@cache
def _funcignore() -> pathspec.GitIgnoreSpec:
    lines = (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
    return pathspec.GitIgnoreSpec.from_lines(lines)


def is_ignored(path: str) -> bool:
    """Whether .funcignore (gitignore syntax, as Core Tools reads it) excludes a relative path."""
    return _funcignore().match_file(path)


def upload_set(root: Path) -> set[str]:
    """What `func azure functionapp publish` would upload from `root`: every file .funcignore
    does not exclude (a directory it excludes is not entered)."""
    uploaded: set[str] = set()
    for directory, folders, files in os.walk(root):
        relative = Path(directory).relative_to(root)
        folders[:] = [f for f in folders if not is_ignored((relative / f).as_posix() + "/")]
        uploaded.update(
            (relative / name).as_posix()
            for name in files
            if not is_ignored((relative / name).as_posix())
        )
    return uploaded


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The upload set of a copy of the tracked files after the documented steps made theirs."""
    root = tmp_path_factory.mktemp("app")
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in [n.decode() for n in tracked if n] + list(SECRET_FILES):
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        source = ROOT / name
        target.write_bytes(source.read_bytes() if source.is_file() else b"{}")
    return upload_set(root)


def test_publishing_ships_every_module_the_app_imports(
    published: set[str], closure: tuple[frozenset[str], frozenset[str]]
) -> None:
    """function_app.py, host.json, requirements.txt, the policy and every module the app loads."""
    files, _ = closure
    assert "store/tables.py" in files  # loaded lazily: proves the walk follows nested imports
    needed = {*files, "function_app.py", "host.json", "requirements.txt"}
    assert needed - published == set()


def test_publishing_ships_no_secret_bearing_file(published: set[str]) -> None:
    """No file a documented step creates with a key in it is uploaded."""
    assert published & set(SECRET_FILES) == set()
    assert [name for name in published if name.startswith(".emulator/")] == []


@pytest.mark.parametrize("path", MUST_EXCLUDE)
def test_development_paths_are_excluded(path: str) -> None:
    """Tests, the emulator, the simulator, benchmarks, the demo and node_modules are not deployed."""
    assert is_ignored(path + "any_file.py")


def test_configured_policy_file_is_deployed(published: set[str]) -> None:
    """The policy file the sample settings name ships with the app."""
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    policy = values.get("ALLOCATION_POLICY_FILE")
    assert policy, "local.settings.sample.json names no ALLOCATION_POLICY_FILE"
    assert (ROOT / policy).is_file()
    assert policy in published


# --- the app's modules ----------------------------------------------------------------------------


def test_app_does_not_import_development_code(
    closure: tuple[frozenset[str], frozenset[str]],
) -> None:
    """The app never imports the emulator, simulator, tests or benchmarks."""
    files, _ = closure
    assert not [f for f in files if f.startswith(tuple(MUST_EXCLUDE))]


# --- requirements.txt -----------------------------------------------------------------------------


def _requirements() -> dict[str, str]:
    """requirements.txt as {normalized distribution name: the whole requirement line}."""
    pins: dict[str, str] = {}
    for raw in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name = re.split(r"[=<>!~;\[ ]", line, maxsplit=1)[0]
        pins[_normalize(name)] = line
    return pins


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def _packages_distributions() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def _owner(origin: str, candidates: list[str]) -> str | None:
    """Which of the candidate distributions lists the file `origin` among its files."""
    target = Path(origin).resolve()
    for name in candidates:
        dist = importlib.metadata.distribution(name)
        if any(Path(str(dist.locate_file(f))).resolve() == target for f in dist.files or ()):
            return _normalize(name)
    return None


def _distribution(module: str) -> str | None:
    """The installed distribution that provides an import name (None if none does)."""
    top = module.split(".", maxsplit=1)[0]
    candidates = _packages_distributions().get(top, [])
    if len(set(candidates)) == 1:
        return _normalize(candidates[0])
    # A namespace package (azure.*): ask which distribution ships the module's file.
    parts = module.split(".")
    for depth in range(len(parts), 1, -1):
        try:
            spec = importlib.util.find_spec(".".join(parts[:depth]))
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.origin:
            return _owner(spec.origin, candidates)
    return None


def _imported_distributions(third_party: frozenset[str]) -> dict[str, str]:
    """{distribution: an import that needs it}; unresolvable imports map to the import name."""
    found: dict[str, str] = {}
    for module in sorted(third_party):
        dist = _distribution(module)
        if dist is None:
            if module.split(".")[0] == "azure" and module.count(".") >= 2:
                continue  # `from azure.x import Name` also yields azure.x.Name: not a module
            dist = _normalize(".".join(module.split(".")[:2]).replace(".", "-"))
        found.setdefault(dist, module)
    return found


def test_every_imported_distribution_is_pinned(
    closure: tuple[frozenset[str], frozenset[str]],
) -> None:
    """Each third-party distribution the app imports is pinned with == in requirements.txt."""
    _, third_party = closure
    pins = _requirements()
    imported = _imported_distributions(third_party)
    assert "azure-functions" in imported
    assert "azure-data-tables" in imported  # a lazy import, found by the static walk
    missing = {
        dist: module
        for dist, module in imported.items()
        if dist not in pins and dist not in KNOWN_UNPINNED
    }
    assert missing == {}, f"imported but not in requirements.txt: {missing}"
    loose = [line for dist, line in pins.items() if dist in imported and "==" not in line]
    assert loose == [], f"not pinned with ==: {loose}"


def test_requirements_hold_nothing_test_only(
    closure: tuple[frozenset[str], frozenset[str]],
) -> None:
    """Everything in requirements.txt is imported by the app or is a named companion; no dev tools."""
    _, third_party = closure
    imported = _imported_distributions(third_party)
    pins = _requirements()
    unused = sorted(dist for dist in pins if dist not in imported and dist not in PINNED_COMPANIONS)
    assert unused == [], f"requirements.txt pins what the app never imports: {unused}"
    assert not [dist for dist in pins if dist in DEV_ONLY]
    assert all("==" in pins[dist] for dist in PINNED_COMPANIONS if dist in pins)


# --- host.json ------------------------------------------------------------------------------------


def test_host_json_is_v2_with_the_current_extension_bundle() -> None:
    """host.json: version 2.0 and extension bundle [4.*, 5.0.0) (docs/protocol/functions-and-tables.md §3)."""
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {
        "id": "Microsoft.Azure.Functions.ExtensionBundle",
        "version": "[4.*, 5.0.0)",
    }
    prefix = host.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    assert prefix == "api", "docs/functions.md and the doctor assume the /api route prefix"
