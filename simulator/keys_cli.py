"""`derive-key` and `verify-key`: per-device keys from a DPS group enrollment key.

`derive-key` takes the SDK sample's positional arguments
``<provisioning host> <id scope> <registration id> <group primary key> <group secondary key>``
(or flags) and writes ``secrets.json`` with the *derived* device keys, never the group keys:
``{"provisioningHost", "idScope", "registrationId", "primaryKey", "secondaryKey"}``. Factory bulk
mode derives many ids (``--count N --prefix P`` or ``--ids-file``) into a directory of secrets
files or one JSON Lines file. `verify-key` tells whether a device key belongs to a group key.

Rules:

- Group keys come from, in order: the argument or flag, ``--group-keys-file``, the environment
  (``DPS_GROUP_PRIMARY_KEY``, ``DPS_GROUP_SECONDARY_KEY``); the last two keep them out of shell
  history. A device key for `verify-key`: ``--device-key`` or ``DPS_DEVICE_KEY``.
- Everything is validated before anything is written; a message names the argument at fault.
- Secrets files are 0600 (directories 0700), written to a temporary file in the same directory and
  renamed into place; an existing file is refused unless ``--force``, or left as it is when it
  already holds exactly what would be written (running the same command again changes nothing
  and succeeds).
- No key reaches stdout or stderr unless ``--show-keys``.
- Exit codes: 0 success, 1 `verify-key` mismatch, 2 usage or validation error.
- `--local`: the provisioning host, ID scope and group keys come from the running local cloud
  (`make up`; the group is `--group`, default its first custom-allocation group), so only the
  registration id is given: ``derive-key --local breakroom499-contoso-tstrsd-007``. After an
  operator regenerates a group key, the same command with ``--force`` re-derives the device keys.

Files are written and read by `simulator.secrets_file`; the credential rules live in the pure
``sas`` package. Errors: `secrets_file.UsageError` (exit code 2).
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sas import (
    KeyFormatError,
    RegistrationIdError,
    decode_key,
    derive_device_key,
    validate_registration_id,
)
from simulator.device import SimulatorError
from simulator.local import local_group
from simulator.secrets_file import (
    DeviceSecrets,
    UsageError,
    derive_secrets,
    write_secret_file,
)

Command = Callable[[argparse.Namespace, Mapping[str, str]], int]

ENV_GROUP_PRIMARY_KEY = "DPS_GROUP_PRIMARY_KEY"
ENV_GROUP_SECONDARY_KEY = "DPS_GROUP_SECONDARY_KEY"
ENV_DEVICE_KEY = "DPS_DEVICE_KEY"
EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 2

_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?")
_ID_SCOPE = re.compile(r"[A-Za-z0-9]{1,64}")
# (role, dest, positional argument number, --group-keys-file field, environment variable)
_GROUP_KEY_SOURCES = (
    ("primary", "group_primary_key", 4, "primaryKey", ENV_GROUP_PRIMARY_KEY),
    ("secondary", "group_secondary_key", 5, "secondaryKey", ENV_GROUP_SECONDARY_KEY),
)
# (dest, metavar) of derive-key's positional arguments, in the SDK sample's order.
_POSITIONALS = (
    ("provisioning_host", "provisioning-host"),
    ("id_scope", "id-scope"),
    ("registration_id", "registration-id"),
    ("group_primary_key", "group-primary-key"),
    ("group_secondary_key", "group-secondary-key"),
)

KEY_SOURCES_HELP = f"""\
group keys, first found wins:
  1. --group-primary-key / --group-secondary-key (or derive-key's positional arguments 4, 5)
  2. --group-keys-file FILE: JSON {{"primaryKey": ..., "secondaryKey": ...}}, or the output of
     `az iot dps enrollment-group show --show-keys` (attestation.symmetricKey)
  3. the environment: {ENV_GROUP_PRIMARY_KEY}, {ENV_GROUP_SECONDARY_KEY}
Prefer 2 or 3: arguments end up in shell history and in the process list.
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `derive-key` and `verify-key` to the simulator's subcommands."""
    _add_derive_key(commands)
    _add_verify_key(commands)


# --- derive-key ---------------------------------------------------------------------------------


def _add_derive_key(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "derive-key",
        help="derive device keys from a group enrollment key and write secrets files",
        description=(
            "Derive a device's keys from a DPS group enrollment's keys and write secrets.json\n"
            "(mode 0600): provisioning host, ID scope, registration id and the derived primary\n"
            "and secondary keys. The group keys are never written. Bulk mode (--count/--prefix\n"
            "or --ids-file) derives many registration ids into --out-dir or --jsonl."
        ),
        epilog=KEY_SOURCES_HELP
        + "\nexit codes: 0 written, 2 usage or validation error (the message names the argument)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for dest, metavar in _POSITIONALS:
        parser.add_argument(
            f"positional_{dest}", nargs="?", metavar=metavar, help=f"same as --{metavar}"
        )
    parser.add_argument(
        "--provisioning-host", metavar="HOST", help="e.g. global.azure-devices-provisioning.net"
    )
    parser.add_argument("--id-scope", metavar="SCOPE", help="the DPS ID scope, e.g. 0ne00000001")
    parser.add_argument("--registration-id", metavar="ID", help="one device's registration id")
    parser.add_argument("--group-primary-key", metavar="KEY", help="see 'group keys' below")
    parser.add_argument("--group-secondary-key", metavar="KEY", help="see 'group keys' below")
    parser.add_argument("--group-keys-file", type=Path, metavar="FILE", help="see 'group keys'")
    bulk = parser.add_mutually_exclusive_group()
    bulk.add_argument("--count", type=_positive_int, metavar="N", help="bulk: N ids P1..PN")
    bulk.add_argument("--ids-file", type=Path, metavar="FILE", help="bulk: one id per line")
    parser.add_argument(
        "--prefix", metavar="P", help="with --count: ids are P then 1..N zero-padded to N's width"
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--output", type=Path, metavar="PATH", help="one device: the file (default secrets.json)"
    )
    output.add_argument("--out-dir", type=Path, metavar="DIR", help="one <id>.json per device")
    output.add_argument("--jsonl", type=Path, metavar="FILE", help="one JSON line per device")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.add_argument("--show-keys", action="store_true", help="also print the derived keys")
    parser.add_argument(
        "--local",
        action="store_true",
        help="take DPS's host, ID scope and the group keys from the running local cloud",
    )
    parser.add_argument(
        "--group", metavar="ID", help="--local: the enrollment group (default: first custom one)"
    )
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="--local: the local cloud's state directory"
    )
    parser.add_argument(
        "--strict-ids",
        action="store_true",
        help="refuse ids outside lower-case a-z, 0-9 and '-' instead of warning",
    )
    parser.set_defaults(command=_reported("derive-key", _derive_key))


def _derive_key(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.local:
        host, scope, primary, secondary = _from_local_cloud(args)
    else:
        if args.group is not None:
            raise UsageError("--group: only with --local (otherwise give the group's keys)")
        host, host_label = _required(args, "provisioning_host", 1)
        _check(_HOST, host, host_label, "a host name such as global.azure-devices-provisioning.net")
        scope, scope_label = _required(args, "id_scope", 2)
        _check(
            _ID_SCOPE, scope, scope_label, "the DPS ID scope: letters and digits, e.g. 0ne00000001"
        )
        keys = group_keys(args, env)
        for role, dest, position, file_field, env_name in _GROUP_KEY_SOURCES:
            if role not in keys:
                raise UsageError(
                    f"{dest.replace('_', ' ')}: missing; give it as positional argument "
                    f"{position}, --{dest.replace('_', '-')}, in --group-keys-file ({file_field}) "
                    f"or in {env_name}"
                )
        primary, secondary = keys["primary"], keys["secondary"]
    registration_ids = _registration_ids(args)
    devices = [
        derive_secrets(host, scope, registration_id, primary, secondary)
        for registration_id in registration_ids
    ]
    summary = _write_devices(args, devices)
    print(summary)
    if args.show_keys:
        for device in devices:
            print(f"{device.registration_id}\t{device.primary_key}\t{device.secondary_key}")
    return EXIT_OK


def _from_local_cloud(args: argparse.Namespace) -> tuple[str, str, str, str]:
    """With --local: the one positional argument is the registration id; the rest is the cloud's."""
    given = [
        f"--{dest.replace('_', '-')}"
        for dest in ("provisioning_host", "id_scope", "group_primary_key", "group_secondary_key")
        if getattr(args, dest) is not None
    ] + (["--group-keys-file"] if args.group_keys_file is not None else [])
    extra = [getattr(args, f"positional_{dest}") for dest, _ in _POSITIONALS[1:]]
    if given or any(value is not None for value in extra):
        raise UsageError(
            f"{', '.join(given) or 'positional arguments'}: with --local, give only the "
            "registration id; DPS and the group keys come from the local cloud"
        )
    if args.positional_provisioning_host is not None:  # the only positional: the registration id
        if args.registration_id is not None:
            raise UsageError("--registration-id: also given as a positional argument")
        args.registration_id = args.positional_provisioning_host
        args.positional_provisioning_host = None
    try:
        group = local_group(args.state_dir, args.group)
    except SimulatorError as error:
        raise UsageError(str(error)) from None
    return group.provisioning_host, group.id_scope, group.primary_key, group.secondary_key


def _registration_ids(args: argparse.Namespace) -> list[str]:
    """The ids to derive, validated; warnings go to stderr, grouped by kind."""
    single, single_label = _optional(args, "registration_id", 3)
    labelled: list[tuple[str, str]]
    if args.prefix is not None and args.count is None:
        raise UsageError("--prefix: only with --count")
    if args.count is not None or args.ids_file is not None:
        if single is not None:
            raise UsageError(f"{single_label}: not allowed with --count or --ids-file")
        if args.output is not None:
            raise UsageError("--output: one device only; use --out-dir or --jsonl in bulk mode")
        if args.out_dir is None and args.jsonl is None:
            raise UsageError("--out-dir or --jsonl: required with --count or --ids-file")
        labelled = _counted_ids(args) if args.count is not None else _ids_from_file(args.ids_file)
    else:
        if single is None:
            raise UsageError(
                "registration id: missing; give it as positional argument 3, --registration-id, "
                "or use --count/--ids-file"
            )
        labelled = [(single, single_label)]
    warned: dict[str, list[str]] = {}
    for registration_id, label in labelled:
        try:
            warnings = validate_registration_id(registration_id, strict=args.strict_ids)
        except RegistrationIdError as error:
            raise UsageError(f"{label}: {error.problem}") from None
        for warning in warnings:
            warned.setdefault(warning, []).append(registration_id)
    for warning, ids in warned.items():
        who = f"registration id {ids[0]!r}"
        if len(ids) > 1:
            who = f"{len(ids)} registration ids (first {ids[0]!r})"
        print(f"warning: {who} {warning}", file=sys.stderr)
    return [registration_id for registration_id, _ in labelled]


def _counted_ids(args: argparse.Namespace) -> list[tuple[str, str]]:
    if args.prefix is None:
        raise UsageError("--prefix: required with --count")
    width = len(str(args.count))
    ids = [f"{args.prefix}{number:0{width}d}" for number in range(1, args.count + 1)]
    return [(registration_id, f"--prefix (id {registration_id!r})") for registration_id in ids]


def _ids_from_file(path: Path) -> list[tuple[str, str]]:
    """Ids one per line; blank lines and '#' comments skipped; duplicates refused."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--ids-file: cannot read {path}: {_reason(error)}") from None
    seen: dict[str, int] = {}
    labelled = []
    for number, line in enumerate(lines, start=1):
        registration_id = line.strip()
        if not registration_id or registration_id.startswith("#"):
            continue
        first = seen.setdefault(registration_id.lower(), number)
        if first != number:
            raise UsageError(
                f"--ids-file line {number}: registration id {registration_id!r} duplicates line "
                f"{first} (DPS compares registration ids case-insensitively)"
            )
        labelled.append((registration_id, f"--ids-file line {number}"))
    if not labelled:
        raise UsageError(f"--ids-file: {path} holds no registration id")
    return labelled


def _write_devices(args: argparse.Namespace, devices: Sequence[DeviceSecrets]) -> str:
    """Write the secrets where the arguments say; return a one-line summary without keys."""
    if args.jsonl is not None:
        lines = "".join(device.to_json(indent=None) + "\n" for device in devices)
        if not _write(args.jsonl, lines, "--jsonl", force=args.force):
            return f"{args.jsonl} already holds these {len(devices)} device(s): unchanged"
        return f"wrote {len(devices)} device(s) to {args.jsonl}"
    if args.out_dir is not None:
        directory: Path = args.out_dir
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(f"--out-dir: cannot create {directory}: {_reason(error)}") from None
        # Files that already hold their device's keys are left as they are; the rest are written.
        pending = [
            (path, data)
            for device in devices
            for path, data in [
                (directory / f"{device.registration_id}.json", device.to_json() + "\n")
            ]
            if not (os.path.lexists(path) and _holds(path, data))
        ]
        existing = [path for path, _ in pending if os.path.lexists(path)]
        if existing and not args.force:
            raise UsageError(
                f"--out-dir: {len(existing)} file(s) already exist, first {existing[0]}; "
                "pass --force to overwrite them"
            )
        for path, data in pending:
            _write(path, data, "--out-dir", force=args.force)
        unchanged = len(devices) - len(pending)
        kept = f" ({unchanged} already held their keys)" if unchanged else ""
        return f"wrote {len(pending)} secrets file(s) to {directory}{kept}"
    output: Path = args.output if args.output is not None else Path("secrets.json")
    (device,) = devices
    if not _write(output, device.to_json() + "\n", "--output", force=args.force):
        return f"{output} already holds these keys for {device.registration_id!r}: unchanged"
    return f"wrote {output} for registration id {device.registration_id!r}"


def _write(path: Path, data: str, label: str, *, force: bool) -> bool:
    """Write `data` to `path` (0600); False when the file already held exactly `data`."""
    if not force and os.path.lexists(path) and _holds(path, data):
        return False
    try:
        write_secret_file(path, data, force=force)
    except FileExistsError:
        raise UsageError(f"{label}: {path} already exists; pass --force to overwrite it") from None
    except OSError as error:
        raise UsageError(f"{label}: cannot write {path}: {_reason(error)}") from None
    return True


def _holds(path: Path, data: str) -> bool:
    """Whether the regular file at `path` holds exactly `data` (a link or anything unreadable
    does not)."""
    try:
        if path.is_symlink() or not path.is_file():
            return False
        return path.read_text(encoding="utf-8") == data
    except (OSError, UnicodeDecodeError):
        return False


# --- verify-key ---------------------------------------------------------------------------------


def _add_verify_key(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "verify-key",
        help="tell whether a device key belongs to a group key and a registration id",
        description=(
            "Derive the registration id's key from the group primary and/or secondary key\n"
            "and compare it with the device key."
        ),
        epilog=KEY_SOURCES_HELP
        + f"device key: --device-key or the environment variable {ENV_DEVICE_KEY}\n"
        + "\nexit codes: 0 match, 1 no match, 2 usage or validation error",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--registration-id", metavar="ID", required=True)
    parser.add_argument("--device-key", metavar="KEY", help=f"or {ENV_DEVICE_KEY}")
    parser.add_argument("--group-primary-key", metavar="KEY", help="see 'group keys' below")
    parser.add_argument("--group-secondary-key", metavar="KEY", help="see 'group keys' below")
    parser.add_argument("--group-keys-file", type=Path, metavar="FILE", help="see 'group keys'")
    parser.set_defaults(command=_reported("verify-key", _verify_key))


def _verify_key(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    registration_id: str = args.registration_id
    try:
        validate_registration_id(registration_id)
    except RegistrationIdError as error:
        raise UsageError(f"--registration-id: {error.problem}") from None
    device_key, device_label = _first(
        [(args.device_key, "--device-key"), (env.get(ENV_DEVICE_KEY), ENV_DEVICE_KEY)]
    )
    if device_key is None:
        raise UsageError(f"--device-key: missing; give it or set {ENV_DEVICE_KEY}")
    _decode(device_key, device_label)
    candidates = group_keys(args, env)
    if not candidates:
        raise UsageError(
            "--group-primary-key: missing; give a group key as a flag, in --group-keys-file, "
            f"or in {ENV_GROUP_PRIMARY_KEY} / {ENV_GROUP_SECONDARY_KEY}"
        )
    matches = [
        role
        for role, group_key in candidates.items()
        if hmac.compare_digest(derive_device_key(group_key, registration_id), device_key)
    ]
    if matches:
        print(
            f"device key of registration id {registration_id!r} matches the {matches[0]} group key"
        )
        return EXIT_OK
    print(
        f"device key of registration id {registration_id!r} does not match the "
        f"{' or '.join(candidates)} group key"
    )
    return EXIT_MISMATCH


# --- shared helpers -----------------------------------------------------------------------------


def _reported(name: str, command: Command) -> Command:
    """Run ``command``; a UsageError becomes one line on stderr and exit code 2."""

    def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
        try:
            return command(args, env)
        except UsageError as error:
            print(f"{name}: error: {error}", file=sys.stderr)
            return EXIT_USAGE

    return run


def _optional(args: argparse.Namespace, dest: str, position: int) -> tuple[str | None, str]:
    """A value given as a flag or as the ``position``-th positional argument, never both."""
    flag = "--" + dest.replace("_", "-")
    from_flag: str | None = getattr(args, dest)
    from_position: str | None = getattr(args, f"positional_{dest}", None)
    positional_label = f"{dest.replace('_', '-')} (positional argument {position})"
    if from_flag is not None and from_position is not None:
        raise UsageError(f"{flag}: also given as positional argument {position}; give it once")
    if from_position is not None:
        return from_position, positional_label
    return from_flag, flag


def _required(args: argparse.Namespace, dest: str, position: int) -> tuple[str, str]:
    value, label = _optional(args, dest, position)
    if value is None:
        raise UsageError(
            f"{dest.replace('_', ' ')}: missing; give it as positional argument {position} "
            f"or --{dest.replace('_', '-')}"
        )
    return value, label


def group_keys(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, str]:
    """Role ("primary"/"secondary") -> validated group key, for the roles given anywhere.

    Each key comes from its argument, else --group-keys-file, else the environment.
    """
    file_keys = _read_group_keys_file(args.group_keys_file)
    keys = {}
    for role, dest, position, file_field, env_name in _GROUP_KEY_SOURCES:
        key, label = _first(
            [
                _optional(args, dest, position),
                (file_keys.get(file_field), f"--group-keys-file {file_field}"),
                (env.get(env_name), env_name),
            ]
        )
        if key is not None:
            _decode(key, label)
            keys[role] = key
    return keys


def _read_group_keys_file(path: Path | None) -> dict[str, str]:
    """primaryKey/secondaryKey from a JSON file, top level or az's attestation.symmetricKey."""
    if path is None:
        return {}
    try:
        document: Any = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as error:
        raise UsageError(f"--group-keys-file: cannot read {path}: {_reason(error)}") from None
    except ValueError:
        raise UsageError(f"--group-keys-file: {path} is not JSON") from None
    if isinstance(document, dict) and "attestation" in document:
        document = (document.get("attestation") or {}).get("symmetricKey")
    if not isinstance(document, dict):
        raise UsageError("--group-keys-file: expected a JSON object with primaryKey/secondaryKey")
    keys = {name: document[name] for name in ("primaryKey", "secondaryKey") if name in document}
    for name, value in keys.items():
        if not isinstance(value, str):
            raise UsageError(f"--group-keys-file {name}: expected a string")
    if not keys:
        raise UsageError("--group-keys-file: holds neither primaryKey nor secondaryKey")
    return keys


def _first(candidates: Sequence[tuple[str | None, str]]) -> tuple[str | None, str]:
    """The first (value, label) whose value is given; (None, "") if none is."""
    for value, label in candidates:
        if value is not None:
            return value, label
    return None, ""


def _decode(key: str, label: str) -> None:
    try:
        decode_key(key, name=label)
    except KeyFormatError as error:
        raise UsageError(str(error)) from None


def _check(pattern: re.Pattern[str], value: str, label: str, expected: str) -> None:
    if not pattern.fullmatch(value):
        raise UsageError(f"{label}: expected {expected}")


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("expected a whole number of at least 1")
    return int(text)


def _reason(error: BaseException) -> str:
    return error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
