"""Azurite for tests: ``devtools.azurite`` with a failure that says what to do instead of a traceback.

The fixtures are in ``tests/conftest.py``: ``azurite``, one instance for the whole session that
tests share under their own table prefixes (``fresh_prefix``), and ``own_azurite``, a private one
a test may pause, stop and start again.
"""

from __future__ import annotations

import uuid

import pytest

from devtools import azurite as _azurite
from devtools.azurite import ACCOUNT, ACCOUNT_KEY, AzuriteError, free_port

__all__ = ["ACCOUNT", "ACCOUNT_KEY", "Azurite", "free_port", "fresh_prefix"]


class Azurite(_azurite.Azurite):
    """``devtools.azurite.Azurite`` that fails the test cleanly when Azurite cannot start."""

    def start(self) -> Azurite:
        try:
            super().start()
        except AzuriteError as error:
            pytest.fail(str(error), pytrace=False)
        return self


def fresh_prefix() -> str:
    """A table prefix no other test uses."""
    return "t" + uuid.uuid4().hex[:12]
