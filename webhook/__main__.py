"""Policy tools for operators: validate a policy file, and ask it where a device would go.

    python -m webhook check POLICY.toml
    python -m webhook decide POLICY.toml --registration-id ID --hub HOST [--hub HOST ...]
                         [--group GROUP] [--current-hub HOST] [--payload JSON]
    python -m webhook decide POLICY.toml --request REQUEST.json

Exit status: 0 valid / assigned, 1 denied, 2 invalid policy or arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from allocation import Assignment, decide, load_policy, parse_request, response_body
from allocation.errors import PolicyError, RequestError
from devtools.cli import quiet_on_closed_pipe


@quiet_on_closed_pipe
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webhook", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a policy file")
    check.add_argument("policy", type=Path)
    explain = commands.add_parser("decide", help="show the decision for one device")
    explain.add_argument("policy", type=Path)
    explain.add_argument("--request", type=Path, help="an AllocationRequest JSON file")
    explain.add_argument("--registration-id")
    explain.add_argument("--hub", action="append", default=[], help="a linked hub (repeat)")
    explain.add_argument("--group", help="the enrollment group id")
    explain.add_argument("--current-hub", help="re-registration: the device's current hub")
    explain.add_argument("--payload", help="the device's payload, as JSON")
    args = parser.parse_args(argv)

    try:
        policy = load_policy(args.policy.read_text(encoding="utf-8"), source=args.policy.name)
    except OSError as error:
        print(f"{args.policy.name}: cannot be read ({error.strerror})", file=sys.stderr)
        return 2
    except PolicyError as error:
        print(error, file=sys.stderr)
        return 2
    if args.command == "check":
        rules = len(policy.rules) - 1
        print(f"{args.policy.name}: valid, {rules} rule{'s' * (rules != 1)}")
        return 0

    try:
        request = parse_request(_request_document(args, parser))
    except RequestError as error:
        print(f"request: {error}", file=sys.stderr)
        return 2
    decision = decide(policy, request)
    if isinstance(decision, Assignment):
        print(f"assigned by rule {decision.rule!r} ({decision.strategy.value})")
        print(json.dumps(response_body(decision), indent=2))
        return 0
    print(f"denied by rule {decision.rule!r}: {decision.reason}")
    return 1


def _request_document(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Any:
    if args.request is not None:
        try:
            return json.loads(args.request.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            parser.error(f"--request: cannot read a JSON document ({error})")
    if not args.registration_id or not args.hub:
        parser.error("decide needs --request, or --registration-id and at least one --hub")
    context: dict[str, Any] = {"registrationId": args.registration_id}
    if args.current_hub:
        context["currentIotHubHostName"] = args.current_hub
    if args.payload is not None:
        try:
            context["payload"] = json.loads(args.payload)
        except ValueError:
            parser.error("--payload: expected a JSON value")
    document: dict[str, Any] = {"deviceRuntimeContext": context, "linkedHubs": args.hub}
    if args.group:
        document["enrollmentGroup"] = {"enrollmentGroupId": args.group}
    return document


if __name__ == "__main__":
    sys.exit(main())
