"""What a fresh worker sees when it imports the app, computed once in a subprocess, and every
repo file and third-party module the app can load (import statements followed through the repo,
nested ones too: the store loads azure-data-tables and azure-iot-hub inside functions).

A subprocess because the Functions host imports `function_app` into a clean interpreter, and
because `app.get_functions()` may be called only once per app object (a second call reports
every function as a duplicate), which other tests in this process also do.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

_INDEX_SCRIPT = """
import json, sys
from pathlib import Path
root = Path.cwd().resolve()
import function_app
functions = {}
for function in function_app.app.get_functions():
    bindings = json.loads(function.get_function_json())["bindings"]
    trigger = next(b for b in bindings if b["direction"] == "IN" and b["type"].endswith("Trigger"))
    functions[function.get_function_name()] = {
        "type": trigger["type"],
        "route": trigger.get("route"),
        "methods": sorted(trigger["methods"]) if trigger.get("methods") else None,
        "authLevel": trigger.get("authLevel"),
    }
modules = {}
for name, module in sorted(sys.modules.items()):
    path = getattr(module, "__file__", None)
    if not path or not Path(path).resolve().is_relative_to(root):
        continue
    relative = Path(path).resolve().relative_to(root)
    if relative.parts[0] not in (".venv", "node_modules") and relative.suffix == ".py":
        modules[name] = relative.as_posix()
print(json.dumps({"functions": functions, "modules": modules}))
"""


@pytest.fixture(scope="session")
def app_index() -> dict[str, Any]:
    """`{"functions": {name: trigger facts}, "modules": {module: repo-relative file}}`."""
    result = subprocess.run(
        [sys.executable, "-c", _INDEX_SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    index: dict[str, Any] = json.loads(result.stdout)
    return index


def _local_top_level(name: str) -> bool:
    top = name.split(".", maxsplit=1)[0]
    return (ROOT / top).is_dir() or (ROOT / f"{top}.py").is_file()


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    """Every absolute module name an import statement in `path` names (nested ones too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    if path.name == "__init__.py":
        package = package.rsplit(".", 1)[0] if "." in package else package
    else:
        package = package.rsplit(".", 1)[0] if "." in package else ""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # maybe submodules
    return {name for name in names if name}


def _app_closure(runtime_modules: tuple[str, ...]) -> tuple[frozenset[str], frozenset[str]]:
    """(repo files the app can load, third-party module names the repo code imports directly)."""
    files: set[str] = set(runtime_modules)
    third_party: set[str] = set()
    pending = [ROOT / name for name in runtime_modules]
    while pending:
        path = pending.pop()
        for name in _imports(path):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top == "__future__":
                continue
            if _local_top_level(name):
                found = _module_file(name)
                if found is not None:
                    relative = found.relative_to(ROOT).as_posix()
                    if relative not in files:
                        files.add(relative)
                        pending.append(found)
            else:
                third_party.add(name)
    return frozenset(files), frozenset(third_party)


@pytest.fixture(scope="session")
def closure(app_index: dict[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
    """(repo files the app can load, third-party modules that repo code imports directly)."""
    return _app_closure(tuple(sorted(app_index["modules"].values())))
