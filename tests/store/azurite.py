"""Azurite for tests: ``emulator.azurite`` with a failure that says what to do instead of a traceback."""

from __future__ import annotations

import pytest

from emulator import azurite as _azurite
from emulator.azurite import ACCOUNT, ACCOUNT_KEY, AzuriteError, free_port

__all__ = ["ACCOUNT", "ACCOUNT_KEY", "Azurite", "free_port"]


class Azurite(_azurite.Azurite):
    """``emulator.azurite.Azurite`` that fails the test cleanly when Azurite cannot start."""

    def start(self) -> Azurite:
        try:
            super().start()
        except AzuriteError as error:
            pytest.fail(str(error), pytrace=False)
        return self
