"""The sas package stays pure: importing it loads nothing beyond the standard library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROBE = (
    "import sys; before = set(sys.modules); import sas; "
    "print('\\n'.join(sorted(set(sys.modules) - before)))"
)


def test_importing_sas_loads_only_the_standard_library() -> None:
    """Every module `import sas` brings in is sas itself or part of the standard library."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True
    )
    loaded = {name.split(".")[0] for name in result.stdout.split()}
    assert "sas" in loaded
    assert loaded - {"sas"} <= sys.stdlib_module_names
