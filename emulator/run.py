"""`python -m emulator run`: the emulator alone, every part chosen by an option.

    python -m emulator [run] --config FILE [--bind 127.0.0.1] [--state-dir DIR] [--in-memory]
                       [--mqtt-port 8883] [--https-port 443] [--admin-port 0] [--service-port 8443]
                       [--host-functions] [--functions-port 7071] [--functions-settings FILE]
                       [--function-key KEY] [--time-scale 1.0] [--events-url URL]
                       [--console-port 0] [--no-console] [--log-level LEVEL]

Runs until interrupted (Ctrl-C / SIGTERM), then stops every component in reverse order. With
`--state-dir DIR`, devices, twins, registrations and enrollment edits are kept in DIR/state.json
and a journal synced before each acknowledgement, across restarts; without it (or with `--in-memory`) they live in memory only, while the CA,
certificates and keys still go to the state directory (default `.emulator`), where clients find
`ca.pem` and the operator commands find the admin API.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from emulator.app import Emulator, Options
from emulator.foreground import (
    EXIT_PROBLEM,
    add_https_port,
    add_log_level,
    app_settings,
    configure_logging,
    https_port_options,
    run_until_stopped,
)
from emulator.functions.settings import SAMPLE_FILE, SETTINGS_FILE, LocalSettingsError
from emulator.operator.cli import COMMANDS
from emulator.operator.client import DEFAULT_STATE_DIR
from emulator.service.server import DEFAULT_SERVICE_PORT
from emulator.up import BIND_VARIABLE

__all__ = ["main", "parse_args"]


def _port(parser: argparse.ArgumentParser, option: str, value: int) -> None:
    if not 0 <= value <= 65535:
        parser.error(f"{option}: expected a port number from 0 to 65535")


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Turn `run`'s command-line arguments into `Options`."""
    parser = argparse.ArgumentParser(
        prog="python -m emulator run",
        description="Local Azure IoT DPS and IoT Hub emulator (MQTT 3.1.1 over TLS on port 8883). "
        "`python -m emulator up` starts everything with the checkout's defaults.",
        epilog="commands: up, run, azurite, and, against a running emulator (python -m emulator COMMAND "
        "--help): " + ", ".join(COMMANDS),
    )
    parser.add_argument("--config", type=Path, required=True, help="TOML configuration file")
    parser.add_argument(
        "--bind",
        default=os.environ.get(BIND_VARIABLE) or "127.0.0.1",
        help=f"address to listen on (default ${BIND_VARIABLE}, else 127.0.0.1)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="keep devices, twins, registrations and enrollment edits in DIR across restarts "
        "(state.json, and a journal synced before each acknowledgement); the CA, certificates and keys live there too (default: .emulator, state in "
        "memory)",
    )
    parser.add_argument(
        "--in-memory",
        action="store_true",
        help="keep state in memory even with --state-dir (which then holds only CA and keys)",
    )
    parser.add_argument(
        "--mqtt-port", type=int, default=8883, help="MQTT/TLS port (default 8883, the SDK's)"
    )
    add_https_port(parser)
    parser.add_argument(
        "--admin-port",
        type=int,
        default=0,
        help="admin API port on 127.0.0.1 (default 0: any free port, see <state-dir>/admin.json)",
    )
    parser.add_argument(
        "--host-functions",
        action="store_true",
        help="serve function_app.app's HTTP routes on the --bind address, port 7071 "
        "(see --functions-port)",
    )
    parser.add_argument(
        "--functions-port",
        type=int,
        default=7071,
        help="port of the local Functions host (default 7071, as func start)",
    )
    parser.add_argument(
        "--functions-settings",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"the hosted app's settings, as func start reads them (default: {SETTINGS_FILE} in "
        f"the app's root, created from {SAMPLE_FILE} when missing); the environment wins",
    )
    parser.add_argument(
        "--function-key",
        default=None,
        help="function key the local Functions host enforces (generated and kept when absent)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply DPS's webhook retry waits by this factor (tests use e.g. 0.01)",
    )
    parser.add_argument(
        "--service-port",
        type=int,
        default=DEFAULT_SERVICE_PORT,
        help="IoT Hub service REST API port of the first hub; the next hubs use the following "
        "ports in config order (default 8443; 0 = any free ports, see <state-dir>/hubs.json)",
    )
    parser.add_argument(
        "--events-url",
        default=None,
        help="where device lifecycle events are POSTed as Event Grid events (default: the "
        "local Functions host's device_lifecycle trigger with --host-functions, else nowhere)",
    )
    parser.add_argument(
        "--console-port",
        type=int,
        default=0,
        help="the web console's port on a loopback address (default 0: any free port; the URL "
        "is printed and kept in <state-dir>/admin.json)",
    )
    parser.add_argument("--no-console", action="store_true", help="run without the web console")
    add_log_level(parser)
    args = parser.parse_args(argv)
    for option in (
        "--service-port",
        "--mqtt-port",
        "--admin-port",
        "--functions-port",
        "--console-port",
    ):
        _port(parser, option, getattr(args, option[2:].replace("-", "_")))
    if args.https_port is not None:
        _port(parser, "--https-port", args.https_port)
    if args.events_url is not None and urlsplit(args.events_url).scheme not in ("http", "https"):
        parser.error("--events-url: expected an http:// or https:// URL")
    if args.time_scale <= 0:
        parser.error("--time-scale: expected a number greater than 0")
    https_port, https_required = https_port_options(args.https_port)
    return Options(
        config_path=args.config,
        state_dir=args.state_dir or DEFAULT_STATE_DIR,
        persist=args.state_dir is not None and not args.in_memory,
        mqtt_port=args.mqtt_port,
        https_port=https_port,
        https_port_required=https_required,
        admin_port=args.admin_port,
        bind=args.bind,
        host_functions=args.host_functions,
        functions_bind=args.bind,
        functions_port=args.functions_port,
        function_key=args.function_key,
        time_scale=args.time_scale,
        service_port=args.service_port,
        events_url=args.events_url,
        log_level=args.log_level,
        app_settings_file=args.functions_settings,
        console=not args.no_console,
        console_port=args.console_port,
    )


def _announce_run(emulator: Emulator) -> None:
    options = emulator.options
    print(
        f"emulator ready on {options.bind}:{options.mqtt_port}; CA certificate: {emulator.ca_path}",
        flush=True,
    )
    if emulator.https is not None:
        print(
            f"MQTT over WebSockets and the HTTPS device APIs on {options.bind}:"
            f"{emulator.https.port}",
            flush=True,
        )
    for notice in emulator.notices:
        print(f"note: {notice}", flush=True)
    if emulator.state is not None:
        print(f"state kept in {emulator.state.path}", flush=True)
    if emulator.admin is not None:
        print(f"admin API on {emulator.admin.url} (python -m emulator status)", flush=True)
    print(f"hub service connection strings: {emulator.hubs_path} (mode 0600)", flush=True)
    if emulator.console is not None:
        print(f"console: {emulator.console.url}", flush=True)
    if emulator.functions is not None:
        print(f"functions host on {emulator.functions.base_url}", flush=True)
        if emulator.function_key_generated:
            # Printed once, on purpose, so it can go into webhook_url; it is never logged.
            where = options.state_dir / "function-key"
            print(f"function key (generated, kept in {where}): {emulator.function_key}", flush=True)


def main(argv: Sequence[str]) -> int:
    """`run`'s entry point; returns the process exit status."""
    options = parse_args(argv)
    configure_logging(options.log_level)
    if options.host_functions:
        try:
            settings, path, created = app_settings(options.app_settings_file, dict(os.environ))
        except LocalSettingsError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_PROBLEM
        if created:
            print(f"created {path} from {SAMPLE_FILE}", flush=True)
        options = dataclasses.replace(options, app_settings=settings)
    return run_until_stopped(options, _announce_run)
