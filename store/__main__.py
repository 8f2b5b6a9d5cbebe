"""`python -m store replay <logfile>`: write the registration records a function log marked for replay.

Settings come from the environment (`store.settings`: `AzureWebJobsStorage`, `REGISTRY_TABLE_PREFIX`,
`STORE_TIMEOUT_SECONDS`). Prints one summary line; exit status 0 when every record is in the store,
1 when some failed or were malformed, 2 on a usage or settings error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from localtools.cli import quiet_on_closed_pipe
from store.base import Store, StoreError
from store.replay import parse_replay_lines, replay
from store.settings import StoreSettings, load_settings


def _table_store(settings: StoreSettings) -> Store:
    from store.tables import TableStore  # noqa: PLC0415 -- the SDK loads only when a command needs it

    return TableStore.from_settings(settings)


@quiet_on_closed_pipe
def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    make_store: Callable[[StoreSettings], Store] = _table_store,
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
    args = parser.parse_args(argv)

    try:
        text = args.logfile.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        print(f"logfile: cannot read {args.logfile}: {exc.strerror}", file=sys.stderr)
        return 2
    parsed = parse_replay_lines(text.splitlines())
    for number, message in parsed.malformed:
        print(f"{args.logfile}:{number}: {message}", file=sys.stderr)
    if args.dry_run:
        print(f"found {len(parsed.records)} records, {len(parsed.malformed)} malformed lines")
        return 0 if not parsed.malformed else 1
    try:
        store = make_store(load_settings(os.environ if env is None else env))
    except StoreError as exc:
        print(f"settings: {exc}", file=sys.stderr)
        return 2
    report = replay(store, parsed)
    print(
        f"found {len(parsed.records)} records: written {report.written}, "
        f"already present {report.already_present}, failed {report.failed}, "
        f"malformed lines {report.malformed}"
    )
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
