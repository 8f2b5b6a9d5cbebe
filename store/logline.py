"""Values in log lines, escaped so that no value can start a line of its own.

A log line is one event (STYLE practice 12), and log exports are read line by line, by people and
by ``python -m store replay``. A registration id, a hub name, a rule's reason or an error message
logged raw could carry a newline (or U+2028, U+0085, or any of the other characters
``str.splitlines`` breaks at) and plant a forged line, such as a ``REPLAY-REGISTRATION`` record
pointing another device's inventory row at an attacker's hub. ``Quoted(value)`` renders a value as
a JSON string literal: quoted, with every control and non-ASCII character escaped, so a logged
value is always one token on its own line. Rendering is lazy (``__str__``): a line below the
logger's level costs nothing.

Pure: no I/O.
"""

from __future__ import annotations

import json


class Quoted:
    """``%s`` of this is ``value`` as a JSON string literal (ASCII, quoted, escaped)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __str__(self) -> str:
        value = self.value
        return json.dumps(value if isinstance(value, str | None) else str(value))

    __repr__ = __str__
