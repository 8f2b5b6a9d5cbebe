"""`python -m emulator up`: which Azurite port the app's AzureWebJobsStorage asks for, if any."""

from __future__ import annotations

import pytest

from devtools.azurite import ACCOUNT, ACCOUNT_KEY, DEV_STORAGE_PORT, Azurite
from emulator.up import azurite_port


def devstore(endpoint: str) -> str:
    """Azurite's development account with an explicit Table endpoint."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"TableEndpoint={endpoint};"
    )


@pytest.mark.parametrize(
    "value",
    [
        "UseDevelopmentStorage=true",
        "UseDevelopmentStorage=true;",
        "  usedevelopmentstorage=TRUE;  ",
    ],
)
def test_development_storage_is_azurites_own_port(value: str) -> None:
    """UseDevelopmentStorage=true (any case, a trailing ';', spaces) means 10002."""
    assert azurite_port(value) == DEV_STORAGE_PORT == 10002


@pytest.mark.parametrize(
    ("endpoint", "port"),
    [
        (f"http://127.0.0.1:10012/{ACCOUNT}", 10012),
        (f"http://localhost:20002/{ACCOUNT}", 20002),
    ],
)
def test_a_devstore_account_on_a_loopback_port_is_that_port(endpoint: str, port: int) -> None:
    """The development account with a TableEndpoint on 127.0.0.1 or localhost: its port."""
    assert azurite_port(devstore(endpoint)) == port


def test_the_connection_string_azurite_hands_out_names_its_port() -> None:
    """What the Azurite helper gives its clients maps back to the port it runs on."""
    assert azurite_port(Azurite(43210).connection_string) == 43210


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "DefaultEndpointsProtocol=https;AccountName=contoso;AccountKey=bm90LWEta2V5;"
        "EndpointSuffix=core.windows.net",
        "DefaultEndpointsProtocol=https;AccountName=contoso;AccountKey=bm90LWEta2V5;"
        "TableEndpoint=http://127.0.0.1:10002/contoso;",
        devstore(f"http://10.1.2.3:10002/{ACCOUNT}"),
        devstore(f"http://127.0.0.1/{ACCOUNT}"),
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};",
        "UseDevelopmentStorage=false",
    ],
)
def test_anything_else_starts_nothing(value: str) -> None:
    """A real account, an empty setting, a remote or port-less endpoint: None (nothing to start)."""
    assert azurite_port(value) is None


@pytest.mark.parametrize("port", ["99999", "ten"])
def test_a_devstore_endpoint_with_an_impossible_port_starts_nothing(port: str) -> None:
    """A TableEndpoint port that cannot be a port is not Azurite's: None, not an exception."""
    assert azurite_port(devstore(f"http://127.0.0.1:{port}/{ACCOUNT}")) is None
