"""Fixtures: one Azurite for the session, and a `store` fixture that runs each contract test on both backends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from store.base import Store
from store.memory import MemoryStore
from store.tables import TableStore
from tests.store.azurite import Azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """An Azurite table service on a free loopback port for the whole session."""
    server = Azurite().start()
    try:
        yield server
    finally:
        server.stop()


def fresh_prefix() -> str:
    """A table prefix no other test uses."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture(params=["memory", "azurite"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """The same contract on the in-memory store and on Azurite (fresh tables per test)."""
    if request.param == "memory":
        yield MemoryStore()
        return
    server: Azurite = request.getfixturevalue("azurite")
    table_store = TableStore(
        server.connection_string, table_prefix=fresh_prefix(), timeout_seconds=5
    )
    try:
        yield table_store
    finally:
        table_store.close()
