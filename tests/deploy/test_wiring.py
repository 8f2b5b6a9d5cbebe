"""The app indexes with exactly the functions, routes, methods and auth levels docs/functions.md lists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from simulator.wiring import ALLOCATE_PATH

ROOT = Path(__file__).resolve().parents[2]
NONE = "—"


def _documented() -> dict[str, dict[str, Any]]:
    """The table in docs/functions.md, keyed by function name."""
    rows: dict[str, dict[str, Any]] = {}
    in_table = False
    for line in (ROOT / "docs" / "functions.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| function |"):
            in_table = True
            continue
        if not in_table:
            continue
        if not line.startswith("|"):
            break
        cells = [cell.strip().strip("`") for cell in re.split(r"(?<!\\)\|", line.strip("|"))]
        if set(cells[0]) <= {"-"}:
            continue
        name, trigger, route, methods, auth = cells[:5]
        rows[name] = {
            "type": trigger,
            "route": None if route == NONE else route,
            "methods": None if methods == NONE else sorted(methods.split(", ")),
            "authLevel": None if auth == NONE else auth,
        }
    return rows


def test_docs_table_matches_the_indexed_functions(app_index: dict[str, Any]) -> None:
    """Every indexed function is documented with its trigger, route, methods and auth level, and no more."""
    documented = _documented()
    assert documented, "docs/functions.md has no function table"
    assert app_index["functions"] == documented


def test_allocate_is_function_level_at_the_route_the_doctor_checks(
    app_index: dict[str, Any],
) -> None:
    """DPS authenticates with ?code=: allocate must be FUNCTION level at the doctor's ALLOCATE_PATH."""
    allocate = app_index["functions"]["allocate"]
    assert allocate["authLevel"] == "FUNCTION"
    assert allocate["methods"] == ["POST"]
    assert f"/api/{allocate['route']}" == ALLOCATE_PATH


def test_no_function_is_anonymous(app_index: dict[str, Any]) -> None:
    """No HTTP function is open without a key (admin routes need the master key)."""
    levels = {
        name: f["authLevel"]
        for name, f in app_index["functions"].items()
        if f["type"] == "httpTrigger"
    }
    assert levels
    assert "ANONYMOUS" not in levels.values()
