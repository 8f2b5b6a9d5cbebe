"""Damaged or foreign certificate files in the state directory are reported, never replaced."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from emulator.__main__ import main
from emulator.certs import CertificateError, ensure_certificates

NAMES = ["127.46.5.1", "localhost", "toasters.azure-devices.net"]


def corrupt(path: Path) -> None:
    path.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")


def foreign_ca_key(state: Path) -> None:
    """Another emulator's CA key next to this CA certificate."""
    other = state.parent / "other"
    ensure_certificates(other, names=NAMES)
    (state / "ca-key.pem").write_bytes((other / "ca-key.pem").read_bytes())


@pytest.mark.parametrize(
    ("damage", "named", "problem"),
    [
        (lambda s: corrupt(s / "ca.pem"), "ca.pem", "expected a PEM certificate"),
        (lambda s: corrupt(s / "ca-key.pem"), "ca-key.pem", "expected an unencrypted PEM"),
        (foreign_ca_key, "ca-key.pem", "is not the private key of ca.pem"),
        (lambda s: (s / "ca-key.pem").unlink(), "ca.pem", "found without ca-key.pem"),
        (lambda s: (s / "ca.pem").unlink(), "ca-key.pem", "found without ca.pem"),
        (lambda s: corrupt(s / "server.pem"), "server.pem", "expected a PEM certificate"),
        (lambda s: corrupt(s / "server-key.pem"), "server-key.pem", "expected an unencrypted"),
    ],
    ids=[
        "ca-corrupt",
        "ca-key-corrupt",
        "ca-key-foreign",
        "ca-alone",
        "ca-key-alone",
        "server",
        "server-key",
    ],
)
def test_damaged_files_are_reported_and_left_alone(
    tmp_path: Path, damage: Callable[[Path], None], named: str, problem: str
) -> None:
    """Each damage raises CertificateError naming the file; no file is rewritten or created."""
    state = tmp_path / "state"
    ensure_certificates(state, names=NAMES)
    damage(state)
    before = {path.name: path.read_bytes() for path in state.iterdir()}
    with pytest.raises(CertificateError) as raised:
        ensure_certificates(state, names=NAMES)
    assert str(raised.value).startswith(f"{state / named}: ")
    assert problem in str(raised.value)
    assert {path.name: path.read_bytes() for path in state.iterdir()} == before


def test_cli_refuses_a_corrupt_ca_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m emulator run` with a corrupt ca.pem exits 2 naming it, no traceback."""
    config = tmp_path / "e.toml"
    config.touch(mode=0o600)
    config.write_text(
        '[dps]\nid_scope = "0ne00000001"\n\n[[hubs]]\nname = "toasters.azure-devices.net"\n'
    )
    state = tmp_path / "state"
    ensure_certificates(state, names=NAMES)
    corrupt(state / "ca.pem")
    argv = ["run", "--config", str(config), "--state-dir", str(state), "--bind", NAMES[0]]
    assert main([*argv, "--mqtt-port", "0", "--service-port", "0"]) == 2
    err = capsys.readouterr().err
    assert f"error: {state / 'ca.pem'}: expected a PEM certificate" in err
    assert "Traceback" not in err
