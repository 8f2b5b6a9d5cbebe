"""Where this checkout is: the root that holds `function_app.py`, `examples/` and `node_modules/`.

The tools are installed editable (`make install`), so they run this checkout's code from any
directory, and what they need from the checkout (sample files, Azurite, the default state
directory) is found from here rather than from the current directory.
"""

from __future__ import annotations

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]

__all__ = ["CHECKOUT"]
