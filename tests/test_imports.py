"""How the project's modules import each other: no cycle, and the operator CLI stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("allocation", "webhook", "sas", "store", "emulator", "simulator", "devtools", "demo")
MODULES = ("function_app", "lifecycle_functions")


def project_modules() -> dict[str, Path]:
    """Every project module by dotted name (packages by their `__init__`)."""
    found = {name: ROOT / f"{name}.py" for name in MODULES}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `name` imports anywhere in its file (function-level too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = [f"{base}.{alias.name}" for alias in node.names]
            # `from package import module` needs the module, not what the package re-exports.
            named = [target for target in submodules if target in known]
            targets = named if len(named) == len(submodules) else [*named, base]
        for target in targets:
            resolved = target
            while resolved and resolved not in known:
                resolved = resolved.rpartition(".")[0]
            if resolved and resolved != name:
                edges.add(resolved)
    return edges


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_among_the_projects_modules() -> None:
    """Imports run one way: no module reaches itself again, not even through a function body."""
    known = project_modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check above can fail: a two-module loop is reported."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_an_operator_command_loads_no_server_or_functions_code() -> None:
    """`python -m emulator status --help` imports neither the servers nor azure.functions."""
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['emulator', 'status', '--help']\n"
        "try:\n"
        "    runpy.run_module('emulator', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('azure', 'starlette', 'uvicorn', 'httpx', 'emulator.app', 'emulator.web',\n"
        "         'emulator.service', 'emulator.functions', 'emulator.hub', 'emulator.dps',\n"
        "         'emulator.mqtt', 'function_app')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "usage:" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == "[]"
