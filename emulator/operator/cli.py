"""Operator commands: `python -m emulator <command>`, a thin client of the running emulator's API.

The commands and their options are the parser below (`python -m emulator <command> --help`); the
README's "Operator commands" table is the user's view of them. The client finds the emulator
through its state directory (`operator.client`). Every command takes `--state-dir` and `--json`
(print the API's JSON answer as is). Exit status: 0 done; 1 the emulator refused (unknown hub,
device, enrollment; bad value); 2 bad command line; 3 the emulator cannot be reached. A key is
printed only by `regenerate-key --show-key`, and never logged; `console` prints the web
console's URL with its login token (`--open` opens it), read from `admin.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from emulator.operator.client import (
    AdminClient,
    LocalCloud,
    Refused,
    Unreachable,
    registration_line,
)

__all__ = ["COMMANDS", "main"]

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
POLL_WAIT = 5.0

COMMANDS = (
    "status",
    "enrollments",
    "regenerate-key",
    "enable",
    "disable",
    "registrations",
    "devices",
    "show-device",
    "delete-device",
    "send-c2d",
    "tail",
    "faults",
    "fault-set",
    "fault-clear",
    "drop",
    "console",
)

_FAULT_OPTIONS = (
    ("throttle-seconds", float, "dps: answer register/poll with 429 for S seconds"),
    ("throttle-requests", int, "dps: answer the next N requests with 429"),
    ("retry-after", int, "dps: retry-after of those answers (default 1)"),
    ("webhook-latency", float, "dps: wait S seconds before each webhook call"),
    ("refuse-seconds", float, "refuse CONNECTs with CONNACK 3 for S seconds"),
    ("refuse-connects", int, "refuse the next N CONNECTs with CONNACK 3"),
    ("drop-every", float, "close every connection of the target every S seconds"),
)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="the running emulator's state directory (default: $EMULATOR_STATE_DIR, else the "
        "nearest .emulator directory)",
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON answer")
    parser = argparse.ArgumentParser(
        prog="python -m emulator",
        description="Operator commands for a running emulator (see also: python -m emulator run).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common], help=help_text, description=help_text)

    command("status", "hubs, devices, connections, DPS and faults")
    command("enrollments", "enrollment groups and individual enrollments (no keys)")
    regenerate = command("regenerate-key", "replace an enrollment's primary or secondary key")
    regenerate.add_argument("enrollment", help="enrollment group id (or registration id)")
    regenerate.add_argument("--slot", choices=("primary", "secondary"), required=True)
    regenerate.add_argument(
        "--individual", action="store_true", help="an individual enrollment, not a group"
    )
    regenerate.add_argument("--show-key", action="store_true", help="print the new key")
    for name in ("enable", "disable"):
        toggle = command(name, f"{name} an enrollment (DPS answers 'disabled' while disabled)")
        toggle.add_argument("enrollment", help="enrollment group id (or registration id)")
        toggle.add_argument("--individual", action="store_true")
    command("registrations", "DPS registration records")
    command("devices", "the devices of a hub").add_argument("hub")
    show = command("show-device", "a device's identity (no keys), session and twin")
    show.add_argument("hub")
    show.add_argument("device")
    delete = command("delete-device", "remove a device (and drop its connection)")
    delete.add_argument("hub")
    delete.add_argument("device")
    _c2d_arguments(command("send-c2d", "send a cloud-to-device message"))
    tail = command("tail", "print a hub's telemetry as it arrives (Ctrl-C stops)")
    tail.add_argument("hub")
    tail.add_argument("--device", help="only this device's messages")
    tail.add_argument("--count", type=int, help="stop after N messages")
    tail.add_argument("--timeout", type=float, help="stop after S seconds")
    tail.add_argument("--from-start", action="store_true", help="begin with the kept log")
    command("faults", "active faults")
    fault_set = command("fault-set", "inject faults into dps or a hub (replaces its faults)")
    fault_set.add_argument("target", help="dps or a hub name")
    for name, kind, help_text in _FAULT_OPTIONS:
        fault_set.add_argument(f"--{name}", type=kind, help=help_text)
    command("fault-clear", "remove the faults of dps or a hub").add_argument("target")
    drop = command("drop", "close connections of dps or a hub now, as a network failure")
    drop.add_argument("target")
    drop.add_argument("--client-id", help="only this device's (or registration's) connection")
    console = command("console", "print the web console's URL (with its login token)")
    console.add_argument("--open", action="store_true", help="and open it in a browser")
    return parser


def _c2d_arguments(c2d: argparse.ArgumentParser) -> None:
    """send-c2d's arguments: the message and what IoT Hub lets a sender set on it."""
    c2d.add_argument("hub")
    c2d.add_argument("device")
    c2d.add_argument("body")
    c2d.add_argument("--property", action="append", default=[], metavar="NAME=VALUE")
    c2d.add_argument("--message-id")
    c2d.add_argument("--correlation-id")
    c2d.add_argument("--content-type")
    c2d.add_argument("--content-encoding")
    c2d.add_argument(
        "--ttl", type=float, metavar="S", help="expire after S seconds (default: one hour)"
    )
    c2d.add_argument("--expiry", metavar="TIME", help="expire at an ISO 8601 time with a zone")
    c2d.add_argument(
        "--ack",
        choices=("none", "positive", "negative", "full"),
        help="the iothub-ack feedback asked for (carried to the device; no feedback is sent)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return EXIT_USAGE if exit_.code else 0
    try:
        cloud = LocalCloud.find(args.state_dir)
        if args.command == "console":
            return _console(cloud, args)
        return _run(cloud.client(), args)
    except Unreachable as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except Refused as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return 0


def _console(cloud: LocalCloud, args: argparse.Namespace) -> int:
    """Print the console's URL (it holds a login token: only for the person at the terminal)."""
    url = cloud.console_url
    if not url:
        print(
            "error: this local cloud runs without its web console (started with --no-console?)",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    print(json.dumps({"console_url": url}) if args.json else url)
    if args.open:
        import webbrowser  # noqa: PLC0415 -- only for --open

        if not webbrowser.open(url):
            print("no browser found here: open the URL above yourself", file=sys.stderr)
    return 0


def _segment(value: str) -> str:
    return quote(value, safe="")


def _device_path(args: argparse.Namespace) -> str:
    return f"/admin/hubs/{_segment(args.hub)}/devices/{_segment(args.device)}"


def _kind(args: argparse.Namespace) -> str:
    return "individual" if args.individual else "group"


def _run(client: AdminClient, args: argparse.Namespace) -> int:
    command = args.command
    if command == "tail":
        return _tail(client, args)
    answer = _request(client, args)
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    for line in _describe(command, args, answer):
        print(line)
    return 0


def _request(client: AdminClient, args: argparse.Namespace) -> dict[str, Any]:
    command = args.command
    if command == "status":
        return client.call("GET", "/admin/status")
    if command == "enrollments":
        return client.call("GET", "/admin/enrollments")
    if command == "regenerate-key":
        path = f"/admin/enrollments/{_kind(args)}/{_segment(args.enrollment)}/regenerate-key"
        return client.call("POST", path, {"slot": args.slot, "return_key": args.show_key})
    if command in ("enable", "disable"):
        path = f"/admin/enrollments/{_kind(args)}/{_segment(args.enrollment)}/{command}"
        return client.call("POST", path, {})
    if command == "registrations":
        return client.call("GET", "/admin/registrations")
    if command == "devices":
        return client.call("GET", f"/admin/hubs/{_segment(args.hub)}/devices")
    if command == "show-device":
        return client.call("GET", _device_path(args))
    if command == "delete-device":
        return client.call("DELETE", _device_path(args))
    if command == "send-c2d":
        properties: dict[str, str] = {}
        for pair in args.property:
            name, equals, value = pair.partition("=")
            if not equals or not name:
                raise Refused(400, "BadArgument", f"--property {pair!r}: expected NAME=VALUE")
            properties[name] = value
        body: dict[str, Any] = {"body": args.body, "properties": properties}
        for option, field_name in (
            ("message_id", "message_id"),
            ("correlation_id", "correlation_id"),
            ("content_type", "content_type"),
            ("content_encoding", "content_encoding"),
            ("ttl", "ttl_seconds"),
            ("expiry", "expiry"),
            ("ack", "ack"),
        ):
            if getattr(args, option) is not None:
                body[field_name] = getattr(args, option)
        return client.call("POST", f"{_device_path(args)}/c2d", body)
    if command == "faults":
        return client.call("GET", "/admin/faults")
    if command == "fault-set":
        spec = {
            name.replace("-", "_"): getattr(args, name.replace("-", "_"))
            for name, _, _ in _FAULT_OPTIONS
            if getattr(args, name.replace("-", "_")) is not None
        }
        return client.call("PUT", f"/admin/faults/{_segment(args.target)}", spec)
    if command == "fault-clear":
        return client.call("DELETE", f"/admin/faults/{_segment(args.target)}")
    if command == "drop":
        body = {"client_id": args.client_id} if args.client_id else {}
        return client.call("POST", f"/admin/faults/{_segment(args.target)}/drop", body)
    raise AssertionError(f"unhandled command {command}")  # argparse allows only COMMANDS


def _describe(command: str, args: argparse.Namespace, answer: dict[str, Any]) -> list[str]:
    kept = (
        "kept in the state file"
        if answer.get("persisted")
        else ("in memory only: run the emulator with --state-dir to keep it across restarts")
    )
    if command == "status":
        dps = answer["dps"]
        lines = [
            f"mqtt {answer['mqtt']}; state {answer['state_file'] or 'in memory'}",
            f"dps {dps['host']} (id scope {dps['id_scope']}): {dps['enrollments']} enrollment(s), "
            f"{dps['registrations']} assigned, {dps['assigning']} in flight, "
            f"{dps['failed']} failed",
        ]
        lines += [
            f"hub {hub['name']}: {hub['devices']} device(s), {hub['connected']} connected, "
            f"{hub['messages_received']} message(s) received"
            for hub in answer["hubs"]
        ]
        lines += [
            f"fault on {target}: {_fault_line(state)}" for target, state in answer["faults"].items()
        ]
        refused = {
            k: n for k, n in ((answer.get("quotas") or {}).get("refused") or {}).items() if n
        }
        if refused:
            counts = ", ".join(f"{kind} {count}" for kind, count in refused.items())
            lines.append(f"throttled: {sum(refused.values())} request(s) refused ({counts})")
        return lines
    if command == "enrollments":
        return [
            f"{entry['kind']:<10} {entry['id']:<32} {'enabled' if entry['enabled'] else 'DISABLED':<8} "
            f"{entry['allocation']:<7} {', '.join(entry['hubs'])}"
            for entry in answer["enrollments"]
        ] or ["no enrollments"]
    if command == "regenerate-key":
        lines = [
            f"regenerated the {answer['slot']} key of {answer['kind']} enrollment {answer['id']!r} ({kept})"
        ]
        if "key" in answer:
            lines.append(f"{answer['slot']} key: {answer['key']}")
        return lines
    if command in ("enable", "disable"):
        return [f"{answer['kind']} enrollment {answer['id']!r} {command}d ({kept})"]
    if command == "registrations":
        return [registration_line(entry) for entry in answer["registrations"]] or [
            "no registrations"
        ]
    if command == "devices":
        return [
            f"{entry['device_id']:<40} {'enabled' if entry['enabled'] else 'DISABLED':<8} "
            f"{'connected' if entry['connected'] else 'offline'}"
            for entry in answer["devices"]
        ] or [f"no devices in {answer['hub']}"]
    if command == "show-device":
        return [
            f"device {answer['device_id']} in {answer['hub']}: "
            f"{'enabled' if answer['enabled'] else 'DISABLED'}, "
            f"{'connected' if answer['connected'] else 'offline'}",
            f"subscriptions: {', '.join(answer['subscriptions']) or 'none'}",
            "twin:",
            json.dumps(answer["twin"], indent=2),
        ]
    if command == "delete-device":
        return [f"deleted device {answer['device_id']} from {answer['hub']}"]
    if command == "send-c2d":
        how = (
            "sent; it leaves the queue when the device acknowledges it"
            if answer["delivered"]
            else "queued until the device connects and subscribes"
        )
        return [
            f"message {answer['message_id']} to {answer['device_id']}: {how} "
            f"(expires {answer['expiry']})"
        ]
    if command == "faults":
        return [
            f"{target}: {_fault_line(state)}" for target, state in answer["faults"].items()
        ] or ["no faults"]
    if command == "fault-set":
        active = {k: v for k, v in answer["spec"].items() if v and k != "retry_after"}
        return [f"faults on {answer['target']}: {_spec_line(active) or 'none'}"]
    if command == "fault-clear":
        return [f"faults cleared on {answer['target']}"]
    if command == "drop":
        return [f"dropped {answer['dropped']} connection(s) of {answer['target']}"]
    return [json.dumps(answer)]


def _spec_line(spec: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in spec.items())


def _fault_line(state: dict[str, Any]) -> str:
    spec = {k: v for k, v in state["spec"].items() if v and k != "retry_after"}
    left = {k: v for k, v in state.items() if k.endswith("_left") and v}
    return _spec_line(spec) + (f" (left: {_spec_line(left)})" if left else "")


def _tail(client: AdminClient, args: argparse.Namespace) -> int:
    since = 0 if args.from_start else -1
    printed = 0
    deadline = time.monotonic() + args.timeout if args.timeout is not None else None
    query_device = f"&device={quote(args.device, safe='')}" if args.device else ""
    while True:
        wait = POLL_WAIT
        if deadline is not None:
            wait = max(0.0, min(wait, deadline - time.monotonic()))
        answer = client.call(
            "GET",
            f"/admin/hubs/{_segment(args.hub)}/telemetry?since={since}&wait={wait:.2f}{query_device}",
            timeout=wait + 10.0,
        )
        since = answer["next"]
        for message in answer["messages"]:
            if args.json:
                print(json.dumps(message), flush=True)
            else:
                body = message.get("body", message.get("body_base64", ""))
                properties = {**message["system_properties"], **message["properties"]}
                extra = f"  {_spec_line(properties)}" if properties else ""
                print(f"{message['seq']} {message['device_id']}: {body}{extra}", flush=True)
            printed += 1
            if args.count is not None and printed >= args.count:
                return 0
        if deadline is not None and time.monotonic() >= deadline:
            return 0
