"""`python -m emulator up` (what `make up` runs): the whole local cloud, in the foreground.

1. Files, made on first run from the checkout's examples, 0600 since they come to hold keys:
   `emulator.local.toml` (from `examples/emulator.toml`: DPS, the tutorial's two hubs, one
   custom-allocation group whose webhook is the hosted app) and `local.settings.json` (from
   `local.settings.sample.json`: Azurite, the tutorial policy). Both live in the checkout, beside
   `function_app.py`, where `func start` looks for its settings too.
2. Table storage. When the app's `AzureWebJobsStorage` is Azurite's (`UseDevelopmentStorage=true`,
   or a `devstoreaccount1` connection string on a loopback port), Azurite is started on that port
   with its data kept in `<state-dir>/azurite/`. When the port is already taken, the Table service
   found there is used, and the app's readiness check says so if it does not answer.
3. The emulator, its state kept in `<state-dir>` (the checkout's `.emulator` by default): DPS, the
   hubs, the operator API and the Functions app hosted with the settings file's `Values` under the
   environment. The app's readiness check (policy, settings, storage) and the webhook URLs' function
   key are checked before anything says ready; a problem ends `up` with exit status 2 naming the
   setting.
4. A short summary (DPS, ID scope, hubs, enrollment groups, the CA file, the web console's URL with
   its login token, what to try next), then the log. Ctrl-C or SIGTERM stops the emulator, then Azurite. `admin.json` in the state directory
   exists exactly while the cloud is up.

Everything listens on `--bind` (default 127.0.0.1, or `$EMULATOR_BIND`): DPS and the hubs on 8883,
and on 443 over WebSockets and HTTPS (`--https-port`; skipped with one line saying how to enable
it when the port needs privileges), the service API on 8443 and up, the app on 7071; a config made from the example gets its webhook
URL on that address. The test suite sets `EMULATOR_BIND` (and `AzureWebJobsStorage`, which the
environment overrides) so that the documented commands run beside a developer's own cloud.

`python -m emulator azurite` is the storage part alone, for the `func start` path: Azurite as
`local.settings.json` (under the environment) asks, in the foreground, data in the state directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from devtools.azurite import ACCOUNT, DEV_STORAGE_PORT, Azurite, AzuriteError
from devtools.checkout import CHECKOUT
from devtools.files import write_private
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
from emulator.operator.client import ADMIN_FILE
from store.settings import DEV_STORAGE, STORAGE_SETTING

__all__ = ["main"]

BIND_VARIABLE = "EMULATOR_BIND"
EXAMPLE_WEBHOOK_HOST = "127.0.0.1:7071"  # where examples/emulator.toml's webhook_url points
CONFIG_FILE = "emulator.local.toml"
CONFIG_EXAMPLE = Path("examples") / "emulator.toml"
LOCAL_FUNCTION_KEY = "local-dev-key"  # what examples/emulator.toml's webhook_url carries
TRY_DEVICE = "breakroom499-contoso-tstrsd-007"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emulator up",
        description="Start Azurite, DPS, the IoT hubs and the Functions app together, in the "
        "foreground, until Ctrl-C (make up).",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=CHECKOUT / ".emulator",
        help="state, certificates, keys and Azurite's data (default: the checkout's .emulator)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=CHECKOUT / CONFIG_FILE,
        help=f"emulator configuration (default: {CONFIG_FILE} in the checkout, made from "
        f"{CONFIG_EXAMPLE} when missing)",
    )
    parser.add_argument(
        "--settings",
        type=Path,
        default=None,
        help=f"the app's settings (default: {SETTINGS_FILE} in the checkout, made from "
        f"{SAMPLE_FILE} when missing); the environment wins over its Values",
    )
    parser.add_argument(
        "--bind",
        default=os.environ.get(BIND_VARIABLE) or "127.0.0.1",
        help=f"address of DPS, the hubs and the app (default ${BIND_VARIABLE}, else 127.0.0.1)",
    )
    parser.add_argument("--mqtt-port", type=int, default=8883, help="MQTT/TLS port (8883)")
    add_https_port(parser)
    parser.add_argument(
        "--functions-port", type=int, default=7071, help="the Functions app's port (7071)"
    )
    parser.add_argument(
        "--function-key",
        default=LOCAL_FUNCTION_KEY,
        help=f"the function key the hosted app enforces (default {LOCAL_FUNCTION_KEY!r}, as in "
        f"{CONFIG_EXAMPLE}; loopback only)",
    )
    parser.add_argument(
        "--console-port",
        type=int,
        default=0,
        help="the web console's port (default 0: any free port; the summary prints its URL)",
    )
    add_log_level(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `up`; the exit status."""
    args = _parser().parse_args(argv)
    configure_logging(args.log_level)
    state_dir: Path = args.state_dir
    running = _running_pid(state_dir)
    if running is not None:
        print(
            f"error: a local cloud is already running from {state_dir} (process {running}); "
            "stop it first, or give another --state-dir",
            file=sys.stderr,
        )
        return EXIT_PROBLEM
    try:
        if _ensure_config(args.config, f"{args.bind}:{args.functions_port}"):
            print(f"created {args.config} from {CONFIG_EXAMPLE}", flush=True)
        settings, settings_path, created = app_settings(args.settings, dict(os.environ))
    except (LocalSettingsError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_PROBLEM
    if created:
        print(f"created {settings_path} from {SAMPLE_FILE}", flush=True)
    https_port, https_required = https_port_options(args.https_port)
    options = Options(
        config_path=args.config,
        state_dir=state_dir,
        persist=True,
        bind=args.bind,
        mqtt_port=args.mqtt_port,
        https_port=https_port,
        https_port_required=https_required,
        host_functions=True,
        functions_bind=args.bind,
        functions_port=args.functions_port,
        function_key=args.function_key,
        app_settings=settings,
        app_settings_file=settings_path,
        log_level=args.log_level,
        console_port=args.console_port,
    )
    try:
        with _storage(settings.get(STORAGE_SETTING, ""), state_dir) as storage:
            return run_until_stopped(
                options, lambda emulator: _announce(emulator, settings_path, storage)
            )
    except AzuriteError as error:
        print(f"error: {STORAGE_SETTING}: Azurite did not start: {error}", file=sys.stderr)
        return EXIT_PROBLEM


def azurite_main(argv: Sequence[str] | None = None) -> int:
    """`python -m emulator azurite`: Table storage for the app as its settings ask, until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m emulator azurite",
        description="Azurite's Table service where the app's AzureWebJobsStorage points (for "
        "func start), data kept in the state directory, until Ctrl-C.",
    )
    parser.add_argument("--state-dir", type=Path, default=CHECKOUT / ".emulator")
    parser.add_argument("--settings", type=Path, default=None, help=f"default: {SETTINGS_FILE}")
    args = parser.parse_args(argv)
    try:
        settings, _, created = app_settings(args.settings, dict(os.environ))
    except LocalSettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_PROBLEM
    if created:
        print(f"created {SETTINGS_FILE} from {SAMPLE_FILE}", flush=True)
    port = azurite_port(settings.get(STORAGE_SETTING, ""))
    if port is None:
        print(
            f"error: {STORAGE_SETTING}: not Azurite's (UseDevelopmentStorage=true or a "
            f"{ACCOUNT} connection string on a loopback port); nothing to start",
            file=sys.stderr,
        )
        return EXIT_PROBLEM
    if _listening(port):
        print(f"error: 127.0.0.1:{port} is already in use (another Azurite?)", file=sys.stderr)
        return EXIT_PROBLEM
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    location = args.state_dir / "azurite"
    try:
        with Azurite(port, location=location):
            print(f"Azurite (Table storage) on 127.0.0.1:{port}, data in {location}", flush=True)
            stop.wait()
    except AzuriteError as error:
        print(f"error: Azurite did not start: {error}", file=sys.stderr)
        return EXIT_PROBLEM
    return 0


def _running_pid(state_dir: Path) -> int | None:
    """The process of a local cloud that is up from `state_dir`, if there is one."""
    try:
        pid = json.loads((state_dir / ADMIN_FILE).read_text(encoding="utf-8")).get("pid")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(pid, int) or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # a stale file from a run that was killed
    except PermissionError:
        return pid
    return pid


def _ensure_config(path: Path, functions_address: str) -> bool:
    """Make the emulator configuration from the example when it does not exist, its webhook URL
    pointing at the hosted app's address; True if made."""
    if path.exists():
        return False
    text = (CHECKOUT / CONFIG_EXAMPLE).read_text(encoding="utf-8")
    text = text.replace(f"http://{EXAMPLE_WEBHOOK_HOST}/", f"http://{functions_address}/")
    try:
        write_private(path, text, exclusive=True)  # the emulator writes the group keys into it
    except FileExistsError:
        return False
    return True


def azurite_port(connection_string: str) -> int | None:
    """The loopback port of Azurite's Table service that `connection_string` names, or None when
    it names a storage account in Azure (nothing to start)."""
    value = connection_string.strip()
    if value.rstrip(";").lower() == DEV_STORAGE.lower():
        return DEV_STORAGE_PORT
    fields = {
        name.strip().lower(): item
        for name, _, item in (part.partition("=") for part in value.split(";"))
    }
    if fields.get("accountname") != ACCOUNT or "tableendpoint" not in fields:
        return None
    try:
        endpoint = urlsplit(fields["tableendpoint"])
        port = endpoint.port
    except ValueError:
        return None  # not a URL Azurite could serve; the app's readiness check names the setting
    if endpoint.hostname not in ("127.0.0.1", "localhost") or port is None:
        return None
    return port


@contextlib.contextmanager
def _storage(connection_string: str, state_dir: Path) -> Iterator[str]:
    """Azurite for the app when its settings ask for it; yields a line for the summary."""
    port = azurite_port(connection_string)
    if port is None:
        yield "the account in AzureWebJobsStorage" if connection_string else "not configured"
        return
    if _listening(port):
        yield f"the Table service already on 127.0.0.1:{port} (not started by up)"
        return
    location = state_dir / "azurite"
    with Azurite(port, location=location):
        yield f"Azurite on 127.0.0.1:{port}, data in {location}"


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def _announce(emulator: Emulator, settings_path: Path, storage: str) -> None:
    options = emulator.options
    config = emulator.config
    assert config is not None  # noqa: S101 -- set by start()
    ports = {endpoint.hub: endpoint.port for endpoint in emulator.service_endpoints}
    policy = (options.app_settings or {}).get("ALLOCATION_POLICY_FILE") or "(none: hash)"
    lines = [
        "",
        "local cloud up (Ctrl-C stops it)",
        f"  DPS       {config.dps.host} at {options.bind}:{options.mqtt_port}, "
        f"ID scope {config.dps.id_scope}",
    ]
    if emulator.https is not None:
        lines.append(
            f"  443       MQTT over WebSockets and HTTPS for DPS and the hubs at "
            f"{options.bind}:{emulator.https.port}"
        )
    for index, hub in enumerate(config.hubs):
        label = "hubs" if index == 0 else ""
        lines.append(
            f"  {label:<9} {hub} (service API https://{options.bind}:{ports.get(hub, '?')})"
        )
    for index, group in enumerate(config.enrollment_groups):
        label = "groups" if index == 0 else ""
        lines.append(f"  {label:<9} {group.id} ({group.allocation.value} allocation)")
    functions = emulator.functions.base_url if emulator.functions is not None else "-"
    lines += [
        f"  app       {functions}/api/allocate, settings {settings_path.name}, policy {policy}",
        f"  storage   {storage}",
        f"  CA        {emulator.ca_path}",
        f"  console   {emulator.console.url if emulator.console is not None else '-'}",
        f"  keys      group keys in {options.config_path.name}, hub connection strings in "
        f"{emulator.hubs_path} (both 0600)",
        "next: in another terminal,",
        f"  .venv/bin/python -m simulator derive-key --local {TRY_DEVICE}",
        "  .venv/bin/python -m simulator run --local",
        "",
    ]
    lines += [f"note: {notice}" for notice in emulator.notices]
    print("\n".join(lines), flush=True)
