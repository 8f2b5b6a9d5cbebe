"""The emulator's TLS material: a local CA and a server certificate for every name it answers to.

On first start `ensure_certificates(state_dir, names=...)` creates a CA (`ca.pem`, `ca-key.pem`)
and a server certificate (`server.pem`, `server-key.pem`) signed by it, with one SAN per name: IP
SANs for addresses (the SDK sends no SNI to an IP and checks the IP SAN), DNS SANs for host names
(the DPS host and every hub, which devices use verbatim as TLS host names). Later starts reuse the
CA and re-issue the server certificate only when the set of names changed or it nears expiry.
Clients trust `<state-dir>/ca.pem` (the SDK's `server_verification_cert`).

Existing files are never silently replaced: a certificate or key that cannot be read, a CA key
that does not belong to `ca.pem`, or one of the two CA files without the other raises
`CertificateError` naming the file (clients trust that CA; a new one would lock them out).

Private keys are written 0600 and never logged. Nothing here opens a socket.

Errors:

    ValueError
    └── CertificateError   a PEM file in the state directory that cannot be used (exit 2)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devtools.files import write_private

__all__ = ["CertificateError", "CertificatePaths", "ensure_certificates", "server_ssl_context"]

log = logging.getLogger(__name__)

CA_VALIDITY = dt.timedelta(days=3650)
SERVER_VALIDITY = dt.timedelta(days=825)
RENEW_BEFORE = dt.timedelta(days=30)


class CertificateError(ValueError):
    """A certificate or key file in the state directory that cannot be used; names the file."""


@dataclass(frozen=True)
class CertificatePaths:
    """Where the PEM files live; `ca_cert` is the file clients trust."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def ensure_certificates(
    state_dir: Path, *, names: Iterable[str], now: dt.datetime | None = None
) -> CertificatePaths:
    """Create (or reuse) the CA and a server certificate whose SANs are exactly `names`."""
    now = now or dt.datetime.now(dt.UTC)
    state_dir.mkdir(parents=True, exist_ok=True)
    paths = CertificatePaths(
        ca_cert=state_dir / "ca.pem",
        server_cert=state_dir / "server.pem",
        server_key=state_dir / "server-key.pem",
    )
    ca_key_path = state_dir / "ca-key.pem"
    wanted = sorted({name.strip().lower() for name in names if name.strip()})
    if not wanted:
        raise ValueError("names: expected at least one address or host name for the certificate")
    if paths.ca_cert.exists() != ca_key_path.exists():
        present, absent = (
            (paths.ca_cert, ca_key_path) if paths.ca_cert.exists() else (ca_key_path, paths.ca_cert)
        )
        raise CertificateError(
            f"{present}: found without {absent.name}; restore it, or move both away to create "
            "a new CA (clients must then trust the new ca.pem)"
        )
    if paths.ca_cert.exists():
        ca_cert = _load_certificate(paths.ca_cert)
        ca_key = _load_ec_key(ca_key_path)
        if _public_bytes(ca_key.public_key()) != _public_bytes(ca_cert.public_key()):
            raise CertificateError(f"{ca_key_path}: is not the private key of {paths.ca_cert.name}")
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _issue_ca(ca_key, now)
        write_private(ca_key_path, _key_pem(ca_key))
        paths.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        log.info("created emulator CA certificate=%s", paths.ca_cert)
    if not _server_cert_current(paths, ca_cert, wanted, now):
        server_key = ec.generate_private_key(ec.SECP256R1())
        server_cert = _issue_server(server_key, ca_key, ca_cert, wanted, now)
        write_private(paths.server_key, _key_pem(server_key))
        paths.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
        log.info("issued server certificate names=%s", ",".join(wanted))
    return paths


def server_ssl_context(paths: CertificatePaths) -> ssl.SSLContext:
    """A server context: TLS 1.2 or later (the Python SDK pins 1.2), no client certificates."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(paths.server_cert, paths.server_key)
    return context


def _issue_ca(key: ec.EllipticCurvePrivateKey, now: dt.datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Azure IoT emulator local CA")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _issue_server(
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    names: list[str],
    now: dt.datetime,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + SERVER_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_san(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _san(names: list[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries


def _server_cert_current(
    paths: CertificatePaths, ca_cert: x509.Certificate, names: list[str], now: dt.datetime
) -> bool:
    if not (paths.server_cert.exists() and paths.server_key.exists()):
        return False
    cert = _load_certificate(paths.server_cert)
    _load_ec_key(paths.server_key)
    if cert.issuer != ca_cert.subject or cert.not_valid_after_utc - RENEW_BEFORE < now:
        return False
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    present = {str(v) for v in sans.get_values_for_type(x509.IPAddress)}
    present |= set(sans.get_values_for_type(x509.DNSName))
    return present == set(names)


def _load_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError:
        raise CertificateError(f"{path}: expected a PEM certificate") from None


def _load_ec_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise CertificateError(f"{path}: expected an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{path}: expected an EC private key")
    return key


def _public_bytes(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
