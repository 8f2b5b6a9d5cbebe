"""Certificates: SANs for every name, 0600 private keys, reuse of the CA across starts."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

from cryptography import x509

from emulator.certs import ensure_certificates

NAMES = [
    "127.42.9.1",
    "localhost",
    "global.azure-devices-provisioning.net",
    "toasters.azure-devices.net",
]


def sans(path: Path) -> tuple[set[str], set[str]]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}, set(
        ext.get_values_for_type(x509.DNSName)
    )


def test_server_certificate_names_every_address_and_host(tmp_path: Path) -> None:
    """Addresses become IP SANs and host names DNS SANs; the CA PEM lands in the state dir."""
    paths = ensure_certificates(tmp_path, names=NAMES)
    assert paths.ca_cert == tmp_path / "ca.pem"
    ips, dns = sans(paths.server_cert)
    assert ips == {"127.42.9.1"}
    assert dns == {
        "localhost",
        "global.azure-devices-provisioning.net",
        "toasters.azure-devices.net",
    }
    ipaddress.ip_address(next(iter(ips)))


def test_private_keys_are_owner_only(tmp_path: Path) -> None:
    """Both private keys are written 0600."""
    ensure_certificates(tmp_path, names=NAMES)
    for name in ("ca-key.pem", "server-key.pem"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_restart_reuses_ca_and_reissues_only_on_new_names(tmp_path: Path) -> None:
    """Same names: nothing changes; a new hub name: same CA, new server certificate."""
    first = ensure_certificates(tmp_path, names=NAMES)
    ca, server = first.ca_cert.read_bytes(), first.server_cert.read_bytes()
    ensure_certificates(tmp_path, names=list(reversed(NAMES)))
    assert first.server_cert.read_bytes() == server
    ensure_certificates(tmp_path, names=[*NAMES, "heatpumps.azure-devices.net"])
    assert first.ca_cert.read_bytes() == ca
    assert first.server_cert.read_bytes() != server
    assert "heatpumps.azure-devices.net" in sans(first.server_cert)[1]


def test_certificate_near_expiry_is_reissued(tmp_path: Path) -> None:
    """A server certificate within 30 days of expiry is replaced on the next start."""
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=800)
    paths = ensure_certificates(tmp_path, names=NAMES, now=old)
    before = paths.server_cert.read_bytes()
    ensure_certificates(tmp_path, names=NAMES)
    assert paths.server_cert.read_bytes() != before
