"""`python -m emulator`: start DPS, the configured IoT hubs and optionally the Functions host.

    python -m emulator [run] --config emulator.toml [--bind 127.0.0.1] [--state-dir DIR]
                       [--in-memory] [--mqtt-port 8883] [--admin-port 0]
                       [--host-functions] [--function-key KEY] [--time-scale 1.0]
                       [--service-port 8443] [--events-url URL]
    python -m emulator <command> ...      operator commands (`emulator.admin_cli`)

Runs until interrupted (Ctrl-C / SIGTERM), then stops every component in reverse order.
State: with `--state-dir DIR` given, devices, twins, registrations and enrollment edits are kept
in DIR/state.json across restarts; without it (or with `--in-memory`) they live in memory only,
while the CA, certificates and keys still go to the state directory (default `.emulator`), where
clients find `ca.pem` and the operator commands find the admin API.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from emulator import admin_cli
from emulator.app import Emulator, Options
from emulator.certs import CertificateError
from emulator.config import ConfigError
from emulator.service_server import DEFAULT_SERVICE_PORT
from emulator.state import StateError

__all__ = ["main", "parse_args"]


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Turn command-line arguments into `Options`."""
    parser = argparse.ArgumentParser(
        prog="python -m emulator",
        description="Local Azure IoT DPS and IoT Hub emulator (MQTT 3.1.1 over TLS on port 8883).",
        epilog="operator commands, against a running emulator (python -m emulator COMMAND --help): "
        + ", ".join(admin_cli.COMMANDS),
    )
    parser.add_argument("--config", type=Path, required=True, help="TOML configuration file")
    parser.add_argument(
        "--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="keep devices, twins, registrations and enrollment edits in DIR/state.json across "
        "restarts; the CA, certificates and keys live there too (default: .emulator, state in "
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
    parser.add_argument(
        "--admin-port",
        type=int,
        default=0,
        help="admin API port on 127.0.0.1 (default 0: any free port, see <state-dir>/admin.json)",
    )
    parser.add_argument(
        "--host-functions",
        action="store_true",
        help="serve function_app.app's HTTP routes on 127.0.0.1:7071",
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
    args = parser.parse_args(argv)
    if not 0 <= args.service_port <= 65535:
        parser.error("--service-port: expected a port number from 0 to 65535")
    if args.events_url is not None and urlsplit(args.events_url).scheme not in ("http", "https"):
        parser.error("--events-url: expected an http:// or https:// URL")
    if args.time_scale <= 0:
        parser.error("--time-scale: expected a number greater than 0")
    for name in ("mqtt_port", "admin_port"):
        if not 0 <= getattr(args, name) <= 65535:
            parser.error(f"--{name.replace('_', '-')}: expected a port number from 0 to 65535")
    return Options(
        config_path=args.config,
        state_dir=args.state_dir or Path(".emulator"),
        persist=args.state_dir is not None and not args.in_memory,
        mqtt_port=args.mqtt_port,
        admin_port=args.admin_port,
        bind=args.bind,
        host_functions=args.host_functions,
        function_key=args.function_key,
        time_scale=args.time_scale,
        service_port=args.service_port,
        events_url=args.events_url,
    )


async def _serve(options: Options) -> None:
    emulator = Emulator(options)
    await emulator.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    print(
        f"emulator ready on {options.bind}:{options.mqtt_port}; CA certificate: {emulator.ca_path}",
        flush=True,
    )
    if emulator.state is not None:
        print(f"state kept in {emulator.state.path}", flush=True)
    if emulator.admin is not None:
        print(f"admin API on {emulator.admin.url} (python -m emulator status)", flush=True)
    # Printed on purpose (the issue asks for it; they are also in <state-dir>/hubs.json, 0600);
    # never logged.
    for hub, connection_string in emulator.service.connection_strings.items():
        print(f"service connection string for {hub}: {connection_string}", flush=True)
    if emulator.functions is not None:
        print(f"functions host on {emulator.functions.base_url}", flush=True)
        if emulator.function_key_generated:
            # Printed once, on purpose, so it can go into webhook_url; it is never logged.
            where = options.state_dir / "function-key"
            print(f"function key (generated, kept in {where}): {emulator.function_key}", flush=True)
    try:
        await stop.wait()
    finally:
        await emulator.close()


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI entry point; returns the process exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] and arguments[0] in admin_cli.COMMANDS:
        return admin_cli.main(arguments)
    if arguments[:1] == ["run"]:
        arguments = arguments[1:]
    options = parse_args(arguments)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(_serve(options))
    except (ConfigError, StateError, CertificateError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(
            f"error: {error.strerror or error} ({options.bind}:{options.mqtt_port})",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
