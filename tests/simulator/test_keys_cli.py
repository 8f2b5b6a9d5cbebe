"""`python -m simulator derive-key` / `verify-key`, run in-process through main(argv, env)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from sas import derive_device_key
from simulator.__main__ import main
from simulator.secrets_file import DeviceSecrets, derive_secrets, write_secret_file
from tests.fixtures import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES
VECTORS: list[dict[str, Any]] = json.loads((FIXTURES / "keys" / "vectors.json").read_text())
BY_ID = {vector["id"]: vector for vector in VECTORS}
EMU_GROUP_KEY = BY_ID["emu-dev-001"]["groupKey"]
K1_GROUP_KEY = BY_ID["K1"]["groupKey"]
HOST = "global.azure-devices-provisioning.net"
SCOPE = "0ne00000001"
FIELDS = {"provisioningHost", "idScope", "registrationId", "primaryKey", "secondaryKey"}
ALL_KEYS = [EMU_GROUP_KEY, K1_GROUP_KEY] + [vector["derivedKey"] for vector in VECTORS]


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own directory, so the default secrets.json lands there."""
    monkeypatch.chdir(tmp_path)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _derive(*extra: str, env: dict[str, str] | None = None) -> int:
    return main(["derive-key", *extra], env or {})


def _positional(registration_id: str = "dev-001") -> list[str]:
    return [HOST, SCOPE, registration_id, EMU_GROUP_KEY, K1_GROUP_KEY]


def _assert_no_key(text: str) -> None:
    for key in ALL_KEYS:
        assert key not in text


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["id"] for vector in VECTORS])
def test_derive_key_writes_known_answer(vector: dict[str, Any]) -> None:
    """The sample's five positional arguments give secrets.json with the fixture's derived key."""
    group_key, registration_id = vector["groupKey"], vector["registrationId"]
    assert _derive(HOST, SCOPE, registration_id, group_key, group_key) == 0
    document = json.loads(Path("secrets.json").read_text())
    assert document == {
        "provisioningHost": HOST,
        "idScope": SCOPE,
        "registrationId": registration_id,
        "primaryKey": vector["derivedKey"],
        "secondaryKey": vector["derivedKey"],
    }


def test_secrets_file_is_0600_and_holds_only_derived_keys() -> None:
    """secrets.json is private, has exactly the five fields and never a group key."""
    assert _derive(*_positional()) == 0
    path = Path("secrets.json")
    assert _mode(path) == 0o600
    text = path.read_text()
    assert set(json.loads(text)) == FIELDS
    assert json.loads(text)["primaryKey"] == BY_ID["emu-dev-001"]["derivedKey"]
    assert json.loads(text)["secondaryKey"] == derive_device_key(K1_GROUP_KEY, "dev-001")
    assert EMU_GROUP_KEY not in text
    assert K1_GROUP_KEY not in text
    assert [entry.name for entry in Path().iterdir()] == ["secrets.json"]


def test_flags_are_equivalent_to_positionals(tmp_path: Path) -> None:
    """The same values as flags, with --output, give the same document."""
    assert _derive(*_positional()) == 0
    argv = [
        *("--provisioning-host", HOST, "--id-scope", SCOPE, "--registration-id", "dev-001"),
        *("--group-primary-key", EMU_GROUP_KEY, "--group-secondary-key", K1_GROUP_KEY),
        *("--output", str(tmp_path / "flags.json")),
    ]
    assert _derive(*argv) == 0
    assert (tmp_path / "flags.json").read_text() == Path("secrets.json").read_text()
    assert _mode(tmp_path / "flags.json") == 0o600


def test_group_keys_from_the_environment() -> None:
    """DPS_GROUP_PRIMARY_KEY / DPS_GROUP_SECONDARY_KEY stand in for arguments 4 and 5."""
    env = {"DPS_GROUP_PRIMARY_KEY": EMU_GROUP_KEY, "DPS_GROUP_SECONDARY_KEY": K1_GROUP_KEY}
    assert _derive(HOST, SCOPE, "dev-002", env=env) == 0
    document = json.loads(Path("secrets.json").read_text())
    assert document["primaryKey"] == BY_ID["emu-dev-002"]["derivedKey"]
    assert document["secondaryKey"] == derive_device_key(K1_GROUP_KEY, "dev-002")


@pytest.mark.parametrize(
    "document",
    [
        {"primaryKey": EMU_GROUP_KEY, "secondaryKey": K1_GROUP_KEY},
        {
            "attestation": {
                "symmetricKey": {"primaryKey": EMU_GROUP_KEY, "secondaryKey": K1_GROUP_KEY}
            }
        },
    ],
    ids=["plain", "az-enrollment-group-show"],
)
def test_group_keys_from_a_file(document: dict[str, Any]) -> None:
    """--group-keys-file reads a plain key pair or `az ... enrollment-group show` output."""
    Path("group.json").write_text(json.dumps(document))
    assert _derive(HOST, SCOPE, "dev-001", "--group-keys-file", "group.json") == 0
    written = json.loads(Path("secrets.json").read_text())
    assert written["primaryKey"] == BY_ID["emu-dev-001"]["derivedKey"]
    assert written["secondaryKey"] == derive_device_key(K1_GROUP_KEY, "dev-001")


def test_argument_beats_file_beats_environment() -> None:
    """An explicit key wins over --group-keys-file, which wins over the environment."""
    Path("group.json").write_text(json.dumps({"secondaryKey": EMU_GROUP_KEY}))
    env = {"DPS_GROUP_PRIMARY_KEY": "bm90IHVzZWQ=", "DPS_GROUP_SECONDARY_KEY": "bm90IHVzZWQ="}
    argv = [HOST, SCOPE, "dev-001", K1_GROUP_KEY, "--group-keys-file", "group.json"]
    assert _derive(*argv, env=env) == 0
    written = json.loads(Path("secrets.json").read_text())
    assert written["primaryKey"] == derive_device_key(K1_GROUP_KEY, "dev-001")
    assert written["secondaryKey"] == BY_ID["emu-dev-001"]["derivedKey"]


def test_refuses_to_overwrite_without_force(capsys: pytest.CaptureFixture[str]) -> None:
    """An existing secrets.json is left alone and the error names --output and --force."""
    Path("secrets.json").write_text("keep me")
    assert _derive(*_positional()) == 2
    assert Path("secrets.json").read_text() == "keep me"
    err = capsys.readouterr().err
    assert "--output" in err
    assert "--force" in err


def test_the_same_command_again_succeeds_and_changes_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Run twice (the quick start run again): the second finds the same keys in secrets.json,
    says so without printing them, and exits 0; the file is untouched, still 0600. Other keys in
    it are still refused without --force."""
    assert _derive(*_positional()) == 0
    written = Path("secrets.json").read_text()
    modified = Path("secrets.json").stat().st_mtime_ns
    capsys.readouterr()
    assert _derive(*_positional()) == 0
    out = capsys.readouterr().out
    assert "already holds these keys" in out
    assert json.loads(written)["primaryKey"] not in out
    assert Path("secrets.json").read_text() == written
    assert Path("secrets.json").stat().st_mtime_ns == modified
    assert _mode(Path("secrets.json")) == 0o600
    other = _positional()
    other[2] = "dev-002"
    assert _derive(*other, "--output", "secrets.json") == 2
    assert Path("secrets.json").read_text() == written


def test_bulk_again_leaves_identical_files_and_writes_the_rest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A batch run again over its own output succeeds: files that already hold their keys are
    left as they are, and the summary counts them apart."""
    argv = [HOST, SCOPE, *FLAGS, "--count", "2", "--prefix", "d-", "--out-dir", "out"]
    assert _derive(*argv) == 0
    first = Path("out/d-1.json").read_text()
    Path("out/d-2.json").unlink()
    capsys.readouterr()
    assert _derive(*argv) == 0
    assert "wrote 1 secrets file(s) to out (1 already held their keys)" in capsys.readouterr().out
    assert Path("out/d-1.json").read_text() == first
    assert json.loads(Path("out/d-2.json").read_text())["registrationId"] == "d-2"


def test_force_overwrites_and_makes_the_file_private() -> None:
    """--force replaces an existing world-readable file with a 0600 one."""
    Path("secrets.json").write_text("old")
    Path("secrets.json").chmod(0o644)
    assert _derive(*_positional(), "--force") == 0
    assert json.loads(Path("secrets.json").read_text())["registrationId"] == "dev-001"
    assert _mode(Path("secrets.json")) == 0o600


def test_refuses_a_dangling_symlink_without_force(tmp_path: Path) -> None:
    """An existing symlink at --output is refused and its target is not created."""
    Path("secrets.json").symlink_to(tmp_path / "elsewhere.json")
    assert _derive(*_positional()) == 2
    assert not (tmp_path / "elsewhere.json").exists()


def _bad(argument: int, value: str) -> list[str]:
    argv = _positional()
    argv[argument - 1] = value
    return argv


FLAGS = ["--group-primary-key", EMU_GROUP_KEY, "--group-secondary-key", K1_GROUP_KEY]


@pytest.mark.parametrize(
    ("argv", "env", "label"),
    [
        (_bad(1, "https://dps/"), {}, "provisioning-host (positional argument 1)"),
        (
            ["--provisioning-host", "a b", "--id-scope", SCOPE, "--registration-id", "d", *FLAGS],
            {},
            "--provisioning-host: expected a host name",
        ),
        (
            [HOST, SCOPE, *FLAGS, "--ids-file", "ids.txt", "--prefix", "d-", "--jsonl", "x"],
            {},
            "--prefix: only with --count",
        ),
        (_bad(2, "0ne-0001"), {}, "id-scope (positional argument 2)"),
        (_bad(3, "dev 001"), {}, "registration-id (positional argument 3)"),
        (_bad(3, "dev-001."), {}, "registration-id (positional argument 3)"),
        (_bad(3, "d" * 129), {}, "registration-id (positional argument 3)"),
        (_bad(4, "bm90IGEga2V5"), {}, "group-primary-key (positional argument 4)"),
        (_bad(5, K1_GROUP_KEY[:-2]), {}, "group-secondary-key (positional argument 5)"),
        (
            [
                HOST,
                SCOPE,
                "dev-001",
                "--group-primary-key",
                "x",
                "--group-secondary-key",
                K1_GROUP_KEY,
            ],
            {},
            "--group-primary-key: expected",
        ),
        (
            [*_positional(), "--group-primary-key", EMU_GROUP_KEY],
            {},
            "--group-primary-key: also given",
        ),
        (
            [HOST, SCOPE, "dev-001"],
            {"DPS_GROUP_PRIMARY_KEY": "c2hvcnQ=", "DPS_GROUP_SECONDARY_KEY": K1_GROUP_KEY},
            "DPS_GROUP_PRIMARY_KEY",
        ),
        ([HOST, SCOPE, "dev-001", EMU_GROUP_KEY], {}, "group secondary key: missing"),
        ([HOST], {}, "id scope: missing"),
        ([], {}, "provisioning host: missing"),
        ([HOST, SCOPE, *FLAGS], {}, "registration id: missing"),
        ([*_positional(), "--registration-id", "dev-002"], {}, "--registration-id: also given"),
        ([*_positional(), "--prefix", "dev-"], {}, "--prefix: only with --count"),
        (
            [*_positional(), "--group-keys-file", "absent.json"],
            {},
            "--group-keys-file: cannot read",
        ),
        ([HOST, SCOPE, "--count", "3", *FLAGS, "--jsonl", "d.jsonl"], {}, "--prefix: required"),
        ([HOST, SCOPE, "--count", "3", "--prefix", "d-", *FLAGS], {}, "--out-dir or --jsonl"),
        ([*_positional(), "--count", "3", "--prefix", "d-", "--jsonl", "x"], {}, "registration-id"),
        ([HOST, SCOPE, "--count", "3", "--prefix", "d/", *FLAGS, "--jsonl", "x"], {}, "--prefix"),
        ([HOST, SCOPE, "--count", "2", "--prefix", "d", *FLAGS, "--output", "x"], {}, "--output"),
        ([*_positional(), "--count", "0"], {}, "--count"),
    ],
)
def test_validation_errors_name_the_argument(
    argv: list[str], env: dict[str, str], label: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad or missing input exits 2, names the argument at fault, writes nothing, leaks no key."""
    assert _derive(*argv, env=env) == 2
    captured = capsys.readouterr()
    _assert_no_key(captured.out + captured.err)
    assert label in captured.err
    assert not Path("secrets.json").exists()
    assert not Path("x").exists()
    assert not Path("d.jsonl").exists()


def test_upper_case_id_warns_and_strict_ids_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    """An id outside a-z0-9- is written with a warning; --strict-ids turns it into an error."""
    assert _derive(*_positional("SAS-IoT-Devices")) == 0
    assert (
        "warning: registration id 'SAS-IoT-Devices' contains upper-case" in capsys.readouterr().err
    )
    Path("secrets.json").unlink()
    assert _derive(*_positional("SAS-IoT-Devices"), "--strict-ids") == 2
    assert "registration-id (positional argument 3): contains upper-case" in capsys.readouterr().err
    assert not Path("secrets.json").exists()


def test_bulk_count_and_prefix_into_a_directory() -> None:
    """--count 12 --prefix P gives P01..P12, one 0600 file each in a 0700 directory."""
    argv = [HOST, SCOPE, *FLAGS, "--count", "12", "--prefix", "line3-", "--out-dir", "out"]
    assert _derive(*argv) == 0
    directory = Path("out")
    assert _mode(directory) == 0o700
    expected = [f"line3-{number:02d}" for number in range(1, 13)]
    assert sorted(path.stem for path in directory.iterdir()) == expected
    for registration_id in expected:
        path = directory / f"{registration_id}.json"
        assert _mode(path) == 0o600
        document = json.loads(path.read_text())
        assert document["registrationId"] == registration_id
        assert document["primaryKey"] == derive_device_key(EMU_GROUP_KEY, registration_id)
        assert document["secondaryKey"] == derive_device_key(K1_GROUP_KEY, registration_id)


def test_bulk_count_reproduces_the_fixture_ids() -> None:
    """--count 2 --prefix dev-00 derives dev-001 and dev-002: the fixture's known answers."""
    argv = [HOST, SCOPE, "--count", "2", "--prefix", "dev-00", "--jsonl", "f.jsonl"]
    env = {"DPS_GROUP_PRIMARY_KEY": EMU_GROUP_KEY, "DPS_GROUP_SECONDARY_KEY": EMU_GROUP_KEY}
    assert _derive(*argv, env=env) == 0
    lines = [json.loads(line) for line in Path("f.jsonl").read_text().splitlines()]
    assert [line["registrationId"] for line in lines] == ["dev-001", "dev-002"]
    assert [line["primaryKey"] for line in lines] == [
        BY_ID["emu-dev-001"]["derivedKey"],
        BY_ID["emu-dev-002"]["derivedKey"],
    ]


def test_bulk_ids_file_into_json_lines() -> None:
    """--ids-file skips blanks and comments; --jsonl is one 0600 line per device, in order."""
    Path("ids.txt").write_text("# line 3 batch\n\ndev-001\n  dev-002  \n# end\n")
    argv = [HOST, SCOPE, *FLAGS, "--ids-file", "ids.txt", "--jsonl", "devices.jsonl"]
    assert _derive(*argv) == 0
    path = Path("devices.jsonl")
    assert _mode(path) == 0o600
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["registrationId"] for line in lines] == ["dev-001", "dev-002"]
    assert all(set(line) == FIELDS for line in lines)
    assert lines[1]["primaryKey"] == BY_ID["emu-dev-002"]["derivedKey"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("dev-1\ndev-2\n\nDEV-1\n", "--ids-file line 4: registration id 'DEV-1' duplicates line 1"),
        ("dev-1\ndev-2\ndev-2\n", "--ids-file line 3: registration id 'dev-2' duplicates line 2"),
        ("dev-1\n# ok\ndev 2\n", "--ids-file line 3: character ' ' at position 4"),
        ("# nothing\n\n", "holds no registration id"),
    ],
)
def test_bad_ids_file_is_refused_with_line_numbers(
    content: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Duplicate (case-insensitively), invalid or missing ids are refused before any write."""
    Path("ids.txt").write_text(content)
    argv = [HOST, SCOPE, *FLAGS, "--ids-file", "ids.txt", "--out-dir", "out"]
    assert _derive(*argv) == 2
    assert message in capsys.readouterr().err
    assert not Path("out").exists()


def test_bulk_refuses_existing_files_before_writing_any(capsys: pytest.CaptureFixture[str]) -> None:
    """One existing <id>.json stops the batch with nothing written; --force overwrites all."""
    Path("out").mkdir()
    Path("out/d-2.json").write_text("old")
    argv = [HOST, SCOPE, *FLAGS, "--count", "3", "--prefix", "d-", "--out-dir", "out"]
    assert _derive(*argv) == 2
    assert "--out-dir: 1 file(s) already exist" in capsys.readouterr().err
    assert sorted(path.name for path in Path("out").iterdir()) == ["d-2.json"]
    assert _derive(*argv, "--force") == 0
    assert sorted(path.name for path in Path("out").iterdir()) == [
        "d-1.json",
        "d-2.json",
        "d-3.json",
    ]
    assert json.loads(Path("out/d-2.json").read_text())["registrationId"] == "d-2"


def test_no_key_is_printed_without_show_keys(capsys: pytest.CaptureFixture[str]) -> None:
    """Single, bulk and verify runs print no group or device key unless --show-keys is given."""
    assert _derive(*_positional()) == 0
    assert _derive(HOST, SCOPE, *FLAGS, "--count", "2", "--prefix", "dev-00", "--jsonl", "j") == 0
    device_key = BY_ID["emu-dev-001"]["derivedKey"]
    verify = ["--registration-id", "dev-001", "--device-key", device_key]
    assert main(["verify-key", *verify, "--group-primary-key", EMU_GROUP_KEY], {}) == 0
    assert main(["verify-key", *verify, "--group-primary-key", K1_GROUP_KEY], {}) == 1
    captured = capsys.readouterr()
    assert "wrote secrets.json" in captured.out
    _assert_no_key(captured.out + captured.err)


def test_show_keys_prints_derived_keys_but_never_group_keys(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--show-keys prints each device's derived keys; the group keys still never appear."""
    assert _derive(HOST, SCOPE, "dev-001", EMU_GROUP_KEY, EMU_GROUP_KEY, "--show-keys") == 0
    out = capsys.readouterr().out
    assert BY_ID["emu-dev-001"]["derivedKey"] in out
    assert EMU_GROUP_KEY not in out


@pytest.mark.parametrize(
    ("group_flags", "expected_rc", "expected_text"),
    [
        (["--group-primary-key", EMU_GROUP_KEY], 0, "matches the primary group key"),
        (
            ["--group-primary-key", K1_GROUP_KEY, "--group-secondary-key", EMU_GROUP_KEY],
            0,
            "matches the secondary group key",
        ),
        (["--group-secondary-key", K1_GROUP_KEY], 1, "does not match the secondary group key"),
        (
            ["--group-primary-key", K1_GROUP_KEY, "--group-secondary-key", K1_GROUP_KEY],
            1,
            "does not match the primary or secondary group key",
        ),
    ],
)
def test_verify_key_both_ways(
    group_flags: list[str], expected_rc: int, expected_text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """verify-key exits 0 naming the matching group key, or 1 when neither matches."""
    device_key = BY_ID["emu-dev-001"]["derivedKey"]
    argv = ["verify-key", "--registration-id", "dev-001", "--device-key", device_key]
    assert main([*argv, *group_flags], {}) == expected_rc
    assert expected_text in capsys.readouterr().out


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["id"] for vector in VECTORS])
def test_verify_key_known_answers_from_the_environment(vector: dict[str, Any]) -> None:
    """Every fixture's derived key verifies against its group key, both taken from env vars."""
    env = {"DPS_GROUP_PRIMARY_KEY": vector["groupKey"], "DPS_DEVICE_KEY": vector["derivedKey"]}
    assert main(["verify-key", "--registration-id", vector["registrationId"]], env) == 0
    other = "dev-001" if vector["registrationId"] != "dev-001" else "dev-002"
    assert main(["verify-key", "--registration-id", other], env) == 1


@pytest.mark.parametrize(
    ("argv", "env", "label"),
    [
        (
            ["--registration-id", "dev-001", "--group-primary-key", EMU_GROUP_KEY],
            {},
            "--device-key",
        ),
        (
            [
                "--registration-id",
                "dev-001",
                "--device-key",
                "abc",
                "--group-primary-key",
                EMU_GROUP_KEY,
            ],
            {},
            "--device-key: expected standard base64",
        ),
        (["--registration-id", "dev-001"], {"DPS_DEVICE_KEY": "abc="}, "DPS_DEVICE_KEY: expected"),
        (
            ["--registration-id", "dev-001", "--device-key", EMU_GROUP_KEY],
            {},
            "--group-primary-key",
        ),
        (
            ["--registration-id", "dev-001", "--device-key", EMU_GROUP_KEY],
            {"DPS_GROUP_SECONDARY_KEY": "abc="},
            "DPS_GROUP_SECONDARY_KEY: expected",
        ),
        (["--registration-id", "dev/1", "--device-key", EMU_GROUP_KEY], {}, "--registration-id"),
        ([], {}, "--registration-id"),
    ],
)
def test_verify_key_validation_names_the_argument(
    argv: list[str], env: dict[str, str], label: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """verify-key exits 2 on bad or missing input, naming the argument, quoting no key."""
    assert main(["verify-key", *argv], env) == 2
    captured = capsys.readouterr()
    assert label in captured.err
    _assert_no_key(captured.out + captured.err)


def test_help_documents_the_key_sources(capsys: pytest.CaptureFixture[str]) -> None:
    """--help exits 0 and tells how to keep group keys out of shell history."""
    assert main(["derive-key", "--help"], {}) == 0
    out = capsys.readouterr().out
    for text in (
        "DPS_GROUP_PRIMARY_KEY",
        "DPS_GROUP_SECONDARY_KEY",
        "--group-keys-file",
        "history",
    ):
        assert text in out


def test_derive_secrets_api_and_repr_hides_keys() -> None:
    """derive_secrets returns a frozen DeviceSecrets whose repr shows no key."""
    secrets = derive_secrets(HOST, SCOPE, "dev-001", EMU_GROUP_KEY, K1_GROUP_KEY)
    assert secrets == DeviceSecrets(
        provisioning_host=HOST,
        id_scope=SCOPE,
        registration_id="dev-001",
        primary_key=BY_ID["emu-dev-001"]["derivedKey"],
        secondary_key=derive_device_key(K1_GROUP_KEY, "dev-001"),
    )
    assert "dev-001" in repr(secrets)
    _assert_no_key(repr(secrets))
    assert "\n" not in secrets.to_json(indent=None)
    assert json.loads(secrets.to_json(indent=None)) == json.loads(secrets.to_json())


def test_write_secret_file_is_atomic_and_exclusive(tmp_path: Path) -> None:
    """write_secret_file leaves no temporary file behind and refuses an existing path."""
    path = tmp_path / "s.json"
    write_secret_file(path, "one", force=False)
    with pytest.raises(FileExistsError):
        write_secret_file(path, "two", force=False)
    assert path.read_text() == "one"
    write_secret_file(path, "three", force=True)
    assert path.read_text() == "three"
    assert os.listdir(tmp_path) == ["s.json"]
    assert _mode(path) == 0o600
