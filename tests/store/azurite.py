"""Azurite for tests: ``devtools.azurite`` with a failure that says what to do instead of a traceback."""

from __future__ import annotations

import pytest

from devtools import azurite as _azurite
from devtools.azurite import ACCOUNT, ACCOUNT_KEY, AzuriteError, free_port

__all__ = ["ACCOUNT", "ACCOUNT_KEY", "Azurite", "free_port"]


class Azurite(_azurite.Azurite):
    """``devtools.azurite.Azurite`` that fails the test cleanly when Azurite cannot start."""

    def start(self) -> Azurite:
        try:
            super().start()
        except AzuriteError as error:
            pytest.fail(str(error), pytrace=False)
        return self
