"""`python -m store COMMAND`: maintenance of the registration log and inventory tables.

- `replay <logfile> [--accept-unsigned] [--dry-run]`: write the registration records a function
  log marked for replay, if their signature checks under `REPLAY_SIGNING_KEY` (`store.replay`).
  Every refused line is printed with its number. Exit status 0 when every record is in the store,
  1 when some failed, were malformed or were refused.
- `migrate [--dry-run]`: move rows written by earlier versions to the current design
  (`TableStore.migrate`: the inventory into the registry table, every row under its registration
  id's canonical form, the legacy tables deleted). Run it right after deploying a version that
  changed the design; running it again changes nothing.

Settings come from the environment (`store.settings`: `AzureWebJobsStorage`, `REGISTRY_TABLE_PREFIX`,
`STORE_TIMEOUT_SECONDS`, `REPLAY_SIGNING_KEY`). Each command prints one summary line; exit status 2 on a usage or
settings error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from devtools.cli import quiet_on_closed_pipe
from store.base import Store, StoreError
from store.replay import parse_replay_lines, replay
from store.settings import SettingsError, StoreSettings, load_settings

if TYPE_CHECKING:
    from store.tables import TableStore


def _table_store(settings: StoreSettings) -> TableStore:
    from store.tables import TableStore  # noqa: PLC0415 -- the SDK loads only when a command needs it

    return TableStore.from_settings(settings)


@quiet_on_closed_pipe
def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    make_store: Callable[[StoreSettings], Store] = _table_store,
    make_table_store: Callable[[StoreSettings], TableStore] = _table_store,
) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m store")
    commands = parser.add_subparsers(dest="command", required=True)
    replay_cmd = commands.add_parser(
        "replay", help="replay REPLAY-REGISTRATION lines into the table"
    )
    replay_cmd.add_argument(
        "logfile", type=Path, help="function log export (text, one event per line)"
    )
    replay_cmd.add_argument("--dry-run", action="store_true", help="parse and count only")
    replay_cmd.add_argument(
        "--accept-unsigned",
        action="store_true",
        help="also replay unsigned lines (written without REPLAY_SIGNING_KEY); read them first",
    )
    migrate_cmd = commands.add_parser(
        "migrate", help="move rows written by earlier versions to the current key design"
    )
    migrate_cmd.add_argument("--dry-run", action="store_true", help="count only, change nothing")
    args = parser.parse_args(argv)
    environment = os.environ if env is None else env
    if args.command == "migrate":
        return _migrate(environment, make_table_store, dry_run=args.dry_run)

    try:
        settings = load_settings(environment)
    except StoreError as exc:
        print(f"settings: {exc}", file=sys.stderr)
        return 2
    try:
        text = args.logfile.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        print(f"logfile: cannot read {args.logfile}: {exc.strerror}", file=sys.stderr)
        return 2
    parsed = parse_replay_lines(
        text.splitlines(), key=settings.replay_key, accept_unsigned=args.accept_unsigned
    )
    for number, message in parsed.malformed:
        print(f"{args.logfile}:{number}: {message}", file=sys.stderr)
    for number, message in parsed.refused:
        print(f"{args.logfile}:{number}: REFUSED, not replayed: {message}", file=sys.stderr)
    if args.dry_run:
        print(
            f"found {len(parsed.records)} records, {len(parsed.refused)} refused lines, "
            f"{len(parsed.malformed)} malformed lines"
        )
        return 0 if not parsed.malformed and not parsed.refused else 1
    try:
        store = make_store(settings)
    except StoreError as exc:
        print(f"settings: {exc}", file=sys.stderr)
        return 2
    try:
        report = replay(store, parsed)
    finally:
        store.close()
    print(
        f"found {len(parsed.records)} records: written {report.written}, "
        f"already present {report.already_present}, failed {report.failed}, "
        f"refused lines {report.refused}, malformed lines {report.malformed}"
    )
    return 0 if report.ok else 1


def _migrate(
    env: Mapping[str, str], make_store: Callable[[StoreSettings], TableStore], *, dry_run: bool
) -> int:
    try:
        store = make_store(load_settings(env))
    except StoreError as exc:
        print(f"migrate: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, SettingsError) else 1
    try:
        report = store.migrate(dry_run=dry_run)
    except StoreError as exc:
        print(f"migrate: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if dry_run:
        print(
            f"would move {report.devices} legacy inventory rows and {report.registrations} "
            "registration rows, and delete the legacy tables"
        )
    else:
        print(
            f"moved {report.devices} legacy inventory rows and {report.registrations} registration "
            f"rows, deleted {report.tables} legacy tables"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
