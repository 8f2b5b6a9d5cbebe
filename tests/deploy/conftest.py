"""What a fresh worker sees when it imports the app, computed once in a subprocess.

A subprocess because the Functions host imports `function_app` into a clean interpreter, and
because `app.get_functions()` may be called only once per app object (a second call reports
every function as a duplicate), which other tests in this process also do.
"""

from __future__ import annotations

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
