"""What `func azure functionapp publish` ships: .funcignore, requirements.txt and host.json agree
with what the app imports.

The app's modules come from the `closure` fixture (conftest.py): the repo files in `sys.modules`
after a fresh `import function_app`, plus every import statement in them followed through the repo.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import importlib.util
import json
import re
from functools import cache
from pathlib import Path

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


def _funcignore_patterns() -> list[str]:
    lines = (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def is_ignored(path: str, patterns: list[str]) -> bool:
    """Whether .funcignore (gitignore syntax, the subset used here) excludes a repo-relative path.

    A pattern without a slash (other than a trailing one) matches any path component; one with a
    slash is anchored at the root; a trailing slash matches directories only; `!` re-includes.
    """
    parts = path.split("/")
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        directory_only = pattern.endswith("/")
        anchored = "/" in pattern.rstrip("/")
        pattern = pattern.strip("/")
        matched = False
        # Candidates: every ancestor directory, then the path itself (a file).
        for depth in range(1, len(parts) + 1):
            is_dir = depth < len(parts)
            if directory_only and not is_dir:
                continue
            candidate = "/".join(parts[:depth]) if anchored else parts[depth - 1]
            if fnmatch.fnmatchcase(candidate, pattern):
                matched = True
                break
        if matched:
            ignored = not negate
    return ignored


def test_funcignore_matcher_follows_gitignore_rules() -> None:
    """The small matcher agrees with gitignore on the forms .funcignore uses."""
    patterns = ["tests", "/bench/", "*.pyc", ".git*", "docs/", "!docs/keep.md", "a/b.txt"]
    assert is_ignored("tests/x/test_a.py", patterns)
    assert is_ignored("store/tests/x.py", patterns)
    assert is_ignored("bench/run.py", patterns)
    assert not is_ignored("store/bench/run.py", patterns)  # anchored
    assert is_ignored("store/__pycache__/m.pyc", patterns)
    assert is_ignored(".github/workflows/ci.yml", patterns)
    assert is_ignored("docs/deploy.md", patterns)
    assert not is_ignored("docs/keep.md", patterns)
    assert is_ignored("a/b.txt", patterns)
    assert not is_ignored("c/a/b.txt", patterns)
    assert not is_ignored("store/tables.py", patterns)


# --- the app's modules ----------------------------------------------------------------------------


def test_nothing_the_app_loads_is_excluded(closure: tuple[frozenset[str], frozenset[str]]) -> None:
    """Every repo module function_app imports (at import time or lazily) is deployed."""
    files, _ = closure
    assert "function_app.py" in files
    assert (
        "store/tables.py" in files
    )  # loaded lazily: proves the static walk follows nested imports
    patterns = _funcignore_patterns()
    excluded = sorted(path for path in files if is_ignored(path, patterns))
    assert excluded == [], f".funcignore excludes modules the app imports: {excluded}"


def test_app_does_not_import_development_code(
    closure: tuple[frozenset[str], frozenset[str]],
) -> None:
    """The app never imports the emulator, simulator, tests or benchmarks."""
    files, _ = closure
    assert not [f for f in files if f.startswith(tuple(MUST_EXCLUDE))]


@pytest.mark.parametrize("path", MUST_EXCLUDE)
def test_development_paths_are_excluded(path: str) -> None:
    """Tests, the emulator, the simulator, benchmarks, the demo and node_modules are not deployed."""
    assert is_ignored(path + "any_file.py", _funcignore_patterns())


def test_configured_policy_file_is_deployed() -> None:
    """The policy file the sample settings name ships with the app."""
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    policy = values.get("ALLOCATION_POLICY_FILE")
    assert policy, "local.settings.sample.json names no ALLOCATION_POLICY_FILE"
    assert (ROOT / policy).is_file()
    assert not is_ignored(policy, _funcignore_patterns())


def test_local_settings_and_secrets_are_not_deployed() -> None:
    """Local settings (which may hold keys) never ship."""
    patterns = _funcignore_patterns()
    assert is_ignored("local.settings.json", patterns)
    assert is_ignored(".venv/lib/x.py", patterns)


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
