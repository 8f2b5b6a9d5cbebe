"""Cold-start cost: ``import function_app`` beside importing the two SDKs it is built on.

Each import runs in a fresh interpreter (so nothing is cached in ``sys.modules``), timed inside
the interpreter around the import statement alone, many times; the table gives medians. The
baseline is ``import azure.functions, azure.data.tables``: the least any app of this kind loads.
Goal: ``function_app`` within 1.3x of the baseline.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = "import time; t = time.perf_counter(); import {modules}; print(time.perf_counter() - t)"


def import_ms(modules: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        out = subprocess.run(  # noqa: S603 - our own interpreter with a fixed probe
            [sys.executable, "-c", PROBE.format(modules=modules)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        samples.append(float(out) * 1000)
    return statistics.median(samples)


def run(*, quick: bool = False) -> str:
    runs = 5 if quick else 21
    baseline = import_ms("azure.functions, azure.data.tables", runs)
    rows = [
        ("azure.functions, azure.data.tables (baseline)", baseline),
        ("azure.functions", import_ms("azure.functions", runs)),
        ("function_app", import_ms("function_app", runs)),
    ]
    lines = [
        f"### Cold start: import time (median of {runs} fresh interpreters)",
        "",
        "| import | ms | vs baseline |",
        "|---|---:|---:|",
    ]
    lines += [f"| `{name}` | {ms:.1f} | {ms / baseline:.2f}x |" for name, ms in rows]
    return "\n".join(lines)
