"""The emulator in the foreground, as `python -m emulator run` and `up` start it.

What both commands share: `--https-port`, logging (`--log-level`; the Azure SDKs' HTTP chatter stays at WARNING
unless debugging), the hosted app's settings (`local.settings.json` under the environment, as
`func start` gives them), and running until SIGINT or SIGTERM with every problem the emulator can
name reported in one line and exit status 2.

Each connected device holds one open file in the emulator; many systems start a process with a
soft limit of 1,024 open files under a far higher hard one, so both commands raise the soft limit
to the hard one before serving (`raise_open_file_limit`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import resource
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from devtools.checkout import CHECKOUT
from emulator.app import AppNotReady, Emulator, ListenError, Options
from emulator.certs import CertificateError
from emulator.config import ConfigError
from emulator.events.delivery import SubscriptionValidationFailed
from emulator.functions.host import FunctionsHostError
from emulator.functions.settings import (
    SAMPLE_FILE,
    SETTINGS_FILE,
    LocalSettingsError,
    ensure_settings,
    merged,
    read_values,
)
from emulator.https.gateway import DEFAULT_HTTPS_PORT
from emulator.persistence.document import StateError

__all__ = [
    "EXIT_PROBLEM",
    "Announce",
    "add_https_port",
    "add_log_level",
    "app_settings",
    "configure_logging",
    "https_port_options",
    "raise_open_file_limit",
    "run_until_stopped",
    "serve",
]

LOG_LEVELS = ("debug", "info", "warning", "error")
# Loggers whose INFO and DEBUG lines are the SDK's own HTTP traffic (about 25 lines per Table
# request): kept at WARNING unless --log-level debug.
QUIET_LOGGERS = ("azure", "urllib3", "uamqp", "msrest")
EXIT_PROBLEM = 2

Announce = Callable[[Emulator], None]


def add_log_level(parser: argparse.ArgumentParser, default: str = "info") -> None:
    """`--log-level`, shared by `run` and `up`."""
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=default,
        help=f"emulator log level (default {default}); debug also shows the Azure SDKs' HTTP logs",
    )


def add_https_port(parser: argparse.ArgumentParser) -> None:
    """`--https-port`, shared by `run` and `up`."""
    parser.add_argument(
        "--https-port",
        type=int,
        default=None,
        metavar="N",
        help=f"port of MQTT over WebSockets and the HTTPS device APIs (default "
        f"{DEFAULT_HTTPS_PORT}, the SDKs'; when binding it needs privileges the rest runs without "
        "it; a port given here must be had, or the start fails; 0: any free port)",
    )


def https_port_options(port: int | None) -> tuple[int, bool]:
    """`Options.https_port` and `.https_port_required` for `--https-port`: the default port may
    be skipped when it needs privileges, a port the user chose may not."""
    if port is None:
        return DEFAULT_HTTPS_PORT, False
    return port, True


def configure_logging(level: str) -> None:
    """Log to stderr at `level`; the Azure SDKs' chatter stays at WARNING unless debugging."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger().setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)


def app_settings(file: Path | None, environ: dict[str, str]) -> tuple[dict[str, str], Path, bool]:
    """The hosted app's settings from `file` (default: the checkout's local.settings.json, created
    from the sample when missing) under the environment; the file used, and whether it was made."""
    path = file or CHECKOUT / SETTINGS_FILE
    created = file is None and ensure_settings(path, CHECKOUT / SAMPLE_FILE)
    return merged(read_values(path), environ), path, created


async def serve(options: Options, announce: Announce) -> None:
    """Start, call `announce`, run until SIGINT or SIGTERM, stop."""
    emulator = Emulator(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await emulator.start()
        announce(emulator)
        await stop.wait()
    finally:
        await emulator.close()


def raise_open_file_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit; the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):  # e.g. macOS caps an infinite hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run_until_stopped(options: Options, announce: Announce) -> int:
    """Run the emulator in the foreground; one line and exit 2 for a problem it can name."""
    limit = raise_open_file_limit()
    logging.getLogger(__name__).info("open files: at most %d (one per connected device)", limit)
    try:
        asyncio.run(serve(options, announce))
    except (
        ConfigError,
        StateError,
        CertificateError,
        ListenError,
        FunctionsHostError,
        LocalSettingsError,
        SubscriptionValidationFailed,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_PROBLEM
    except AppNotReady as error:
        print("error: the Functions app cannot serve registrations:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_PROBLEM
    return 0
