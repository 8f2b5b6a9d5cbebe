"""`python -m simulator doctor`: check how a DPS enrollment is wired to the webhook; say how to fix it.

The checks are `simulator.wiring`'s (pure). This is the command around them: it reads the
enrollment (`az iot dps enrollment-group show` JSON, or an emulator config), the policy, and with
`--probe` POSTs one harmless request to the webhook; with `--local` it asks the running local cloud
for its enrollment, probes its webhook and reads the hosted app's health. Nothing here prints or
logs a key: URLs are shown masked.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from allocation import Policy, PolicyError, load_policy
from devtools.urls import mask_url
from emulator.operator.client import LocalCloud, Unreachable
from simulator.wiring import (
    EXIT_USAGE,
    PROBE_REGISTRATION_ID,
    DoctorInputError,
    Enrollment,
    Finding,
    endpoint_of,
    enrollment_from_emulator,
    enrollment_from_json,
    exit_code,
    format_report,
    health_finding,
    probe_finding,
    run_checks,
)

Post = Callable[[str, bytes, float], int]


def http_post(url: str, body: bytes, timeout: float) -> int:
    """POST JSON and return the status (4xx/5xx included); OSError when there is no answer."""
    request = urllib.request.Request(  # noqa: S310 -- the scheme is checked by probe_url
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def probe_url(url: str, *, post: Post = http_post, timeout: float = 10.0) -> Finding:
    """POST a harmless AllocationRequest (no linkedHubs: the webhook refuses it with 400, assigns
    nothing and only logs one invalid-request record) and explain the answer."""
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        return probe_finding(None, url=url, error="not an http(s) URL")
    body = json.dumps(
        {"deviceRuntimeContext": {"registrationId": PROBE_REGISTRATION_ID}, "linkedHubs": []}
    ).encode()
    try:
        status = post(url, body, timeout)
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error.__class__.__name__
        return probe_finding(None, url=url, error=str(reason))
    return probe_finding(status, url=url)


def app_health(functions_url: str, master_key: str, *, timeout: float) -> Finding:
    """GET the local Functions host's /admin/host/status with the master key."""
    request = urllib.request.Request(  # noqa: S310 -- the local host's http:// URL
        f"{functions_url.rstrip('/')}/admin/host/status",
        headers={"x-functions-key": master_key},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            state = json.loads(response.read())
    except urllib.error.HTTPError as error:
        return health_finding(None, error=f"HTTP {error.code}")
    except (OSError, ValueError) as error:
        return health_finding(None, error=str(getattr(error, "reason", None) or error))
    return health_finding(state if isinstance(state, dict) else None, error="not JSON")


def local_findings(args: argparse.Namespace, policy: Policy | None) -> tuple[str, list[Finding]]:
    """`--local`: the running local cloud's enrollment, probed, and its app's health."""
    try:
        cloud = LocalCloud.find(args.state_dir)
    except Unreachable as error:
        raise DoctorInputError(f"--local: {error}") from None
    if cloud.config is None:
        raise DoctorInputError("--local: the local cloud does not say which config it runs")
    data = tomllib.loads(_read(cloud.config, "--local config"))
    enrollment = enrollment_from_emulator(data, source=cloud.config.name, group=args.group)
    findings = list(run_checks(enrollment, policy=policy, function_url=None))
    if enrollment.webhook_url:
        findings.append(probe_url(enrollment.webhook_url, timeout=args.timeout))
    if cloud.functions_url and endpoint_of(cloud.functions_url)[1] == endpoint_of(
        enrollment.webhook_url or ""
    )[1].replace("localhost", "127.0.0.1"):
        try:
            master_key = (cloud.state_dir / "master-key").read_text(encoding="utf-8").strip()
        except OSError as error:
            raise DoctorInputError(
                f"--local: cannot read the master key ({error.strerror})"
            ) from None
        findings.append(app_health(cloud.functions_url, master_key, timeout=args.timeout))
    title = f"local cloud, enrollment {enrollment.enrollment_id!r} ({enrollment.source})"
    return title, findings


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `doctor` to the simulator's subcommands."""
    parser = commands.add_parser(
        "doctor",
        help="check a DPS enrollment's webhook wiring and explain each problem",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
        epilog="exit codes: 0 every check ok or warning, 1 a check failed, 2 usage error. "
        "Keys are never printed: ?code= is shown as ****.",
    )
    parser.add_argument(
        "--enrollment",
        type=Path,
        metavar="FILE",
        help="JSON from `az iot dps enrollment-group show` (or `enrollment show`, or a list)",
    )
    parser.add_argument(
        "--emulator-config", type=Path, metavar="FILE", help="the emulator's TOML config"
    )
    parser.add_argument("--group", metavar="ID", help="enrollment group id (with a list or config)")
    parser.add_argument("--policy", type=Path, metavar="FILE", help="allocation policy (TOML)")
    parser.add_argument(
        "--function-url", metavar="URL", help="the allocate function's URL, with ?code=<key>"
    )
    parser.add_argument(
        "--probe",
        action="store_true",
        help="POST a harmless request to the function URL (or the enrollment's webhook URL)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="probe timeout, seconds")
    parser.add_argument(
        "--local",
        action="store_true",
        help="check the running local cloud: its enrollment, a probe of its webhook and the "
        "hosted app's health",
    )
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="--local: the local cloud's state directory"
    )
    parser.set_defaults(command=_run)


def _run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.local:
        try:
            if args.enrollment is not None or args.emulator_config is not None:
                raise DoctorInputError("--local: not with --enrollment or --emulator-config")
            policy = _policy(args)
            title, findings = local_findings(args, policy)
        except DoctorInputError as error:
            print(f"doctor: error: {error}", file=sys.stderr)
            return EXIT_USAGE
        print(format_report(title, findings))
        return exit_code(findings)
    try:
        enrollment, policy = _inputs(args)
    except DoctorInputError as error:
        print(f"doctor: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    findings = list(run_checks(enrollment, policy=policy, function_url=args.function_url))
    if args.probe:
        target = args.function_url or (enrollment.webhook_url if enrollment else None)
        if not target:
            print("doctor: error: --probe: no URL to probe; give --function-url", file=sys.stderr)
            return EXIT_USAGE
        findings.append(probe_url(target, timeout=args.timeout))
    title = (
        f"enrollment {enrollment.enrollment_id!r} ({enrollment.source})"
        if enrollment
        else f"function {mask_url(args.function_url)}"
    )
    print(format_report(title, findings))
    return exit_code(findings)


def _inputs(args: argparse.Namespace) -> tuple[Enrollment | None, Policy | None]:
    if args.enrollment is not None and args.emulator_config is not None:
        raise DoctorInputError("--enrollment and --emulator-config: give one of them")
    if args.enrollment is None and args.emulator_config is None and args.function_url is None:
        raise DoctorInputError("give --enrollment FILE, --emulator-config FILE, or --function-url")
    enrollment: Enrollment | None = None
    if args.enrollment is not None:
        text = _read(args.enrollment, "--enrollment")
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise DoctorInputError(
                f"--enrollment: {args.enrollment.name}: not JSON ({error})"
            ) from None
        enrollment = enrollment_from_json(document, source=args.enrollment.name, group=args.group)
    elif args.emulator_config is not None:
        if not args.group:
            raise DoctorInputError("--emulator-config needs --group ID")
        text = _read(args.emulator_config, "--emulator-config")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise DoctorInputError(f"--emulator-config: not TOML ({error})") from None
        enrollment = enrollment_from_emulator(
            data, source=args.emulator_config.name, group=args.group
        )
    return enrollment, _policy(args)


def _policy(args: argparse.Namespace) -> Policy | None:
    if args.policy is None:
        return None
    try:
        return load_policy(_read(args.policy, "--policy"), source=args.policy.name)
    except PolicyError as error:
        raise DoctorInputError(f"--policy: {error}") from None


def _read(path: Path, flag: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise DoctorInputError(f"{flag}: {path.name}: cannot be read ({error.strerror})") from None
