"""How a DPS enrollment is wired to the allocation webhook: the doctor's checks, as pure functions.

The checks are pure functions over an ``Enrollment`` (parsed once from the JSON that
``az iot dps enrollment-group show`` prints, or from an emulator config's ``[[enrollment_groups]]``
entry), an optional loaded ``allocation.Policy`` and an optional function URL. Each returns a
``Finding``: ok / warn / fail, what was found, why it matters and the fix. What they check
(docs/protocol/webhook.md §1, §2.2, §4, §5):

    allocation-policy   ``allocationPolicy`` is ``custom`` (otherwise DPS never calls the webhook)
    webhook-url         ``customAllocationDefinition.webhookUrl`` is present and absolute
    https               the URL is HTTPS (http only to a loopback host, for the emulator)
    function-key        the URL carries ``?code=<key>`` (without it: 401 -> 400209 on every device)
    route               the path is the app's ``/api/allocate`` (otherwise 404 -> 400207)
    api-version         ``customAllocationDefinition.apiVersion`` is set and >= 2018-09-01-preview
    hubs                every assigning policy rule can reach one of the enrollment's hubs
                        (otherwise its devices are denied -> 400207); unused hubs are a warning
    provisioning-status the enrollment is enabled
    function-url        the enrollment's webhook points at the function URL given
    probe               (shell only, opt-in) what a real POST to the function answers
    app-health          (shell only, --local) the hosted app's own readiness, from the local
                        Functions host's /admin/host/status: its policy loads and its Table
                        storage answers now

`--local` points the doctor at the running local cloud: the enrollment comes from the config it
runs with (`--group`, default the first custom-allocation group), and the probe and the app's
health are always checked.

Nothing here prints or logs a key: every URL in a finding goes through ``mask_url`` first.
This module does no I/O: `simulator.doctor` is the command that reads the files, probes the
webhook and asks the local cloud.

Errors:

    DoctorInputError (ValueError)   the enrollment JSON or config is not what was expected;
                                    the message names the field
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import ip_address
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from allocation import Policy
from allocation.rules import host_glob
from devtools.urls import mask_url
from emulator.config import ConfigError, missing_keys, parse_config
from emulator.dps.enrollments import generate_key

ALLOCATE_PATH = "/api/allocate"  # function_app.py: route "allocate", default routePrefix "api"


MIN_API_VERSION = "2018-09-01-preview"  # docs/protocol/webhook.md §2.2


RECOMMENDED_API_VERSION = "2021-10-01"


PROBE_REGISTRATION_ID = "simulator-doctor-probe"


EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


_API_VERSION = re.compile(r"(\d{4}-\d{2}-\d{2})(-preview)?")


_MASKED = "****"


_SECRET_PARAMS = frozenset({"code", "sig", "sharedaccesskey"})


_UPDATE_HINT = (
    "az iot dps enrollment-group update -g <resource-group> --dps-name <dps> "
    "--enrollment-id <group>"
)


class DoctorInputError(ValueError):
    """The input is not an enrollment the doctor understands; the message names the field."""


class Status(StrEnum):
    """How a check came out."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One check's result: what was found, why it matters, how to fix it."""

    check: str
    status: Status
    what: str
    why: str = ""
    fix: str = ""


@dataclass(frozen=True, kw_only=True)
class Enrollment:
    """What the checks need from an enrollment, whatever file it came from."""

    source: str
    enrollment_id: str | None
    allocation_policy: str | None
    webhook_url: str | None = field(repr=False)  # carries the function key
    api_version: str | None
    hubs: tuple[str, ...]
    provisioning_status: str | None
    emulator: bool = False


def enrollment_from_json(document: object, *, source: str, group: str | None = None) -> Enrollment:
    """Parse `az iot dps enrollment-group show` (or `enrollment show`, or a `list` with `group`)."""
    if isinstance(document, list):
        document = _pick_from_list(document, group, source)
    if not isinstance(document, Mapping):
        raise DoctorInputError(f"{source}: expected a JSON object (one enrollment)")
    enrollment_id = _optional_str(document, source, "enrollmentGroupId", "registrationId")
    if enrollment_id is None:
        raise DoctorInputError(
            f"{source}: enrollmentGroupId: expected the enrollment's id "
            "(is this the output of `az iot dps enrollment-group show`?)"
        )
    definition = _field(document, "customAllocationDefinition")
    if definition is not None and not isinstance(definition, Mapping):
        raise DoctorInputError(f"{source}: customAllocationDefinition: expected an object")
    definition = definition or {}
    hubs = _field(document, "iotHubs")
    if hubs is None:
        legacy = _optional_str(document, source, "iotHubHostName")
        hubs = [legacy] if legacy else []
    if not isinstance(hubs, list) or not all(isinstance(hub, str) for hub in hubs):
        raise DoctorInputError(f"{source}: iotHubs: expected a list of hub host names")
    return Enrollment(
        source=source,
        enrollment_id=enrollment_id,
        allocation_policy=_optional_str(document, source, "allocationPolicy"),
        webhook_url=_optional_str(definition, source, "webhookUrl"),
        api_version=_optional_str(definition, source, "apiVersion"),
        hubs=tuple(hubs),
        provisioning_status=_optional_str(document, source, "provisioningStatus"),
    )


def enrollment_from_emulator(
    data: Mapping[str, Any], *, source: str, group: str | None
) -> Enrollment:
    """One `[[enrollment_groups]]` entry of an emulator config (as `tomllib` parsed it); without
    `group`, the first custom-allocation group (else the first group)."""

    # The emulator fills in missing keys by rewriting its file; the doctor only reads, so it
    # completes an in-memory copy instead (the keys play no part in any check).
    completed: dict[str, Any] = {
        name: [dict(entry) if isinstance(entry, Mapping) else entry for entry in value]
        if isinstance(value, list)
        else value
        for name, value in data.items()
    }
    for section, index, name in missing_keys(completed):
        completed[section][index][name] = generate_key()
    try:
        config = parse_config(completed, source=source)
    except ConfigError as error:
        raise DoctorInputError(str(error)) from None
    if group is None:
        custom = [e for e in config.enrollment_groups if e.allocation.value == "custom"]
        chosen = (custom or list(config.enrollment_groups))[:1]
        group = chosen[0].id if chosen else ""
    for entry in config.enrollment_groups:
        if entry.id.lower() == group.lower():
            return Enrollment(
                source=source,
                enrollment_id=entry.id,
                allocation_policy=entry.allocation.value,
                webhook_url=entry.webhook_url,
                api_version=None,
                hubs=entry.hubs,
                provisioning_status="enabled" if entry.enabled else "disabled",
                emulator=True,
            )
    known = ", ".join(entry.id for entry in config.enrollment_groups) or "none"
    raise DoctorInputError(f"{source}: --group: no enrollment group {group!r} (groups: {known})")


def _pick_from_list(document: list[Any], group: str | None, source: str) -> object:
    if group is None:
        if len(document) == 1:
            return document[0]
        raise DoctorInputError(
            f"{source}: a list of {len(document)} enrollments; pick one with --group"
        )
    for entry in document:
        if isinstance(entry, Mapping):
            ids = {_field(entry, "enrollmentGroupId"), _field(entry, "registrationId")}
            if any(isinstance(i, str) and i.lower() == group.lower() for i in ids):
                return entry
    raise DoctorInputError(f"{source}: --group: no enrollment {group!r} in the list")


def _field(document: Mapping[str, Any], camel: str) -> Any:
    """A field by its camelCase name, or the snake_case name an SDK's as_dict() would use."""
    if camel in document:
        return document[camel]
    return document.get(re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), camel))


def _optional_str(document: Mapping[str, Any], source: str, *names: str) -> str | None:
    for name in names:
        value = _field(document, name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise DoctorInputError(f"{source}: {name}: expected a string")
        return value
    return None


def check_allocation_policy(enrollment: Enrollment) -> Finding:
    """DPS calls the webhook only for enrollments whose allocation policy is custom."""
    policy = enrollment.allocation_policy
    if policy is not None and policy.lower() == "custom":
        return Finding(
            check="allocation-policy", status=Status.OK, what="allocation policy is custom"
        )
    shown = policy or "not set (the DPS instance's default applies)"
    return Finding(
        check="allocation-policy",
        status=Status.FAIL,
        what=f"allocation policy is {shown}, not custom",
        why="DPS calls the webhook only under the custom policy: the function is never called",
        fix=_fix_enrollment(
            enrollment,
            "--allocation-policy custom --webhook-url <url> "
            f"--api-version {RECOMMENDED_API_VERSION}",
        ),
    )


def check_webhook_url(enrollment: Enrollment) -> Finding:
    """The custom allocation definition must name an absolute webhook URL."""
    url = enrollment.webhook_url
    if url and _host(url):
        return Finding(check="webhook-url", status=Status.OK, what=f"webhook URL {mask_url(url)}")
    return Finding(
        check="webhook-url",
        status=Status.FAIL,
        what="no webhook URL" if not url else f"webhook URL {mask_url(url)} is not absolute",
        why="custom allocation needs customAllocationDefinition.webhookUrl (DPS answers 400004 "
        "without it)",
        fix=_fix_enrollment(
            enrollment,
            f"--webhook-url 'https://<app>.azurewebsites.net{ALLOCATE_PATH}?code=<function key>'",
        ),
    )


def check_https(url: str, *, emulator: bool = False) -> Finding:
    """Azure needs HTTPS; plain http is acceptable only to a loopback host (the emulator)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "https":
        return Finding(check="https", status=Status.OK, what="the webhook URL uses HTTPS")
    if scheme == "http" and _is_loopback(_host(url)):
        return Finding(
            check="https",
            status=Status.OK if emulator else Status.WARN,
            what="plain http to a loopback host (fine for the local emulator only)",
            why="" if emulator else "DPS in Azure cannot reach a loopback address",
            fix="" if emulator else "use https://<app>.azurewebsites.net" + ALLOCATE_PATH,
        )
    return Finding(
        check="https",
        status=Status.FAIL,
        what=f"the webhook URL scheme is {scheme or 'missing'}, not https",
        why="the function key travels in the URL: over plain http anyone on the path reads it",
        fix="use the function's https:// URL (Function Apps serve HTTPS on *.azurewebsites.net)",
    )


def check_function_key(url: str, *, emulator: bool = False) -> Finding:
    """DPS authenticates with the function key in the URL (``?code=``); it has nothing else."""
    query = urlsplit(url).query
    codes = [value for name, value in parse_qsl(query, keep_blank_values=True) if name == "code"]
    if codes and codes[0] and codes[0] != _MASKED:
        return Finding(check="function-key", status=Status.OK, what="the URL carries ?code=****")
    if query == _MASKED or (codes and codes[0] == _MASKED):
        return Finding(
            check="function-key",
            status=Status.WARN,
            what="the URL's query string is masked (****): the key cannot be checked from here",
            why="DPS masks key material in what it shows; a missing key means 401 -> 400209",
            fix="run the doctor with --function-url '<url with ?code=>' --probe to test the key",
        )
    where = "the emulator's functions host" if emulator else "Azure Functions"
    return Finding(
        check="function-key",
        status=Status.FAIL,
        what="the webhook URL has no ?code= function key",
        why=f"{where} answers 401 without a key and DPS fails every registration with 400209 "
        "(CustomAllocationUnauthorizedAccess) while the function is 'never called'; only "
        "portal-made enrollments get the key added automatically",
        fix="scripts/deploy sets the URL with the key, or by hand: "
        "az functionapp function keys list -g <rg> -n <app> --function-name allocate, then "
        + _UPDATE_HINT
        + f" --webhook-url '<https://...{ALLOCATE_PATH}>?code=<key>'",
    )


def check_route(url: str) -> Finding:
    """The path must be the app's allocate route, or the host answers 404 (-> 400207)."""
    path = urlsplit(url).path.rstrip("/")
    if path.lower() == ALLOCATE_PATH:
        return Finding(check="route", status=Status.OK, what=f"the path is {ALLOCATE_PATH}")
    return Finding(
        check="route",
        status=Status.FAIL,
        what=f"the path is {path or '/'}, not {ALLOCATE_PATH}",
        why="the Functions host answers 404 for any other route and DPS fails the device with "
        "400207 (CustomAllocationFailed)",
        fix=f"point the webhook at https://<app>.azurewebsites.net{ALLOCATE_PATH}?code=<key> "
        "(docs/functions.md lists the routes)",
    )


def check_api_version(enrollment: Enrollment) -> Finding:
    """The API version of the DPS types sent to the webhook; required, with a documented minimum."""
    version = enrollment.api_version
    fix = _fix_enrollment(enrollment, f"--api-version {RECOMMENDED_API_VERSION}")
    if not version:
        return Finding(
            check="api-version",
            status=Status.FAIL,
            what="customAllocationDefinition.apiVersion is not set",
            why="DPS requires it to know which request shape to send",
            fix=fix,
        )
    match = _API_VERSION.fullmatch(version)
    if match is None or match.group(1) < MIN_API_VERSION[:10]:
        return Finding(
            check="api-version",
            status=Status.FAIL,
            what=f"apiVersion {version!r} is not a DPS API version >= {MIN_API_VERSION}",
            why="DPS supports custom allocation from 2018-09-01-preview on",
            fix=fix,
        )
    return Finding(check="api-version", status=Status.OK, what=f"apiVersion is {version}")


def check_hubs(enrollment: Enrollment, policy: Policy | None) -> tuple[Finding, ...]:
    """Every rule that assigns must find one of the enrollment's hubs among linkedHubs."""
    hubs = enrollment.hubs
    if not hubs:
        return (
            Finding(
                check="hubs",
                status=Status.WARN,
                what="the enrollment lists no IoT hubs",
                why="DPS then sends every hub linked to the DPS instance as linkedHubs, which "
                "this file does not show, so the policy's hubs cannot be checked",
                fix=_fix_enrollment(enrollment, "--iot-hubs '<hub1>.azure-devices.net <hub2>...'"),
            ),
        )
    if policy is None:
        return (Finding(check="hubs", status=Status.OK, what=f"linked hubs: {', '.join(hubs)}"),)
    findings: list[Finding] = []
    reached: set[str] = set()
    group = (enrollment.enrollment_id or "").casefold()
    for rule in policy.rules:
        if rule.deny is not None:
            continue
        if rule.enrollment_groups is not None and group not in rule.enrollment_groups:
            continue  # the rule never applies to this enrollment's devices
        matched = [
            hub for hub in hubs if any(host_glob(p).fullmatch(hub) for p in rule.hub_patterns)
        ]
        reached.update(matched)
        if not matched:
            patterns = ", ".join(rule.hub_patterns)
            findings.append(
                Finding(
                    check="hubs",
                    status=Status.FAIL,
                    what=f"rule {rule.name!r} wants hubs ({patterns}); the enrollment links none "
                    f"of them ({', '.join(hubs)})",
                    why="devices that match this rule are denied (400 -> 400207): no linked hub "
                    "fits",
                    fix=_fix_enrollment(enrollment, "--iot-hubs '<every hub the policy names>'")
                    + f", or change the rule's hubs in {policy.source}",
                )
            )
    unused = [hub for hub in hubs if hub not in reached]
    if unused:
        findings.append(
            Finding(
                check="hubs",
                status=Status.WARN,
                what=f"no rule of {policy.source} assigns to {', '.join(unused)}",
                why="a linked hub the policy never chooses receives no devices",
                fix="remove it from the enrollment's hubs or add it to a rule",
            )
        )
    if not findings:
        findings.append(
            Finding(
                check="hubs",
                status=Status.OK,
                what=f"every rule of {policy.source} reaches a linked hub ({', '.join(hubs)})",
            )
        )
    return tuple(findings)


def check_provisioning_status(enrollment: Enrollment) -> Finding:
    """A disabled enrollment refuses every device before any allocation."""
    status = (enrollment.provisioning_status or "enabled").lower()
    if status == "enabled":
        return Finding(check="provisioning-status", status=Status.OK, what="enrollment is enabled")
    return Finding(
        check="provisioning-status",
        status=Status.FAIL,
        what=f"provisioning status is {status}",
        why="DPS answers 'disabled' to every device of a disabled enrollment",
        fix=_fix_enrollment(enrollment, "--provisioning-status enabled"),
    )


def check_function_url(enrollment: Enrollment, function_url: str) -> Finding:
    """The enrollment's webhook should be the function the user means (same host and path)."""
    webhook = enrollment.webhook_url or ""
    if endpoint_of(webhook) == endpoint_of(function_url):
        return Finding(
            check="function-url", status=Status.OK, what="the webhook is the function URL given"
        )
    return Finding(
        check="function-url",
        status=Status.FAIL,
        what=f"the webhook is {mask_url(webhook)}, not {mask_url(function_url)}",
        why="DPS calls the URL in the enrollment, not the function you deployed",
        fix=_fix_enrollment(enrollment, f"--webhook-url '{mask_url(function_url)}' (the real key)"),
    )


def check_url(url: str, *, emulator: bool = False) -> tuple[Finding, ...]:
    """The checks that need only a function URL."""
    return (
        check_https(url, emulator=emulator),
        check_function_key(url, emulator=emulator),
        check_route(url),
    )


def run_checks(
    enrollment: Enrollment | None,
    *,
    policy: Policy | None = None,
    function_url: str | None = None,
) -> tuple[Finding, ...]:
    """Every check that applies to what was given, in a fixed order."""
    findings: list[Finding] = []
    if enrollment is not None:
        findings.append(check_allocation_policy(enrollment))
        findings.append(check_provisioning_status(enrollment))
        webhook = check_webhook_url(enrollment)
        findings.append(webhook)
        if webhook.status is Status.OK and enrollment.webhook_url:
            findings.extend(check_url(enrollment.webhook_url, emulator=enrollment.emulator))
        if not enrollment.emulator:  # the emulator sends its own fixed request shape
            findings.append(check_api_version(enrollment))
        findings.extend(check_hubs(enrollment, policy))
        if function_url is not None:
            findings.append(check_function_url(enrollment, function_url))
    elif function_url is not None:
        findings.extend(check_url(function_url))
    return tuple(findings)


def probe_finding(status: int | None, *, url: str, error: str = "") -> Finding:
    """What an HTTP status (or a connection error) from the probe POST means for DPS."""
    where = mask_url(url)
    if status is None:
        return Finding(
            check="probe",
            status=Status.FAIL,
            what=f"POST {where} failed: {error or 'no answer'}",
            why="DPS cannot reach the function either; it retries, then the device times out",
            fix="check the host name, that the app is running, and its network restrictions",
        )
    if status in (200, 400):
        meaning = (
            "rejected the probe's deliberately incomplete request" if status == 400 else "answered"
        )
        return Finding(
            check="probe",
            status=Status.OK,
            what=f"POST {where} -> {status}: the function is reachable, the key is accepted and it "
            f"{meaning}",
        )
    if status == 401:
        return Finding(
            check="probe",
            status=Status.FAIL,
            what=f"POST {where} -> 401: the key is missing or wrong",
            why="DPS maps 401 to 400209 (CustomAllocationUnauthorizedAccess)",
            fix="read the key again (az functionapp function keys list ... --function-name "
            "allocate) and run scripts/deploy, which writes it into the enrollment",
        )
    if status == 404:
        return Finding(
            check="probe",
            status=Status.FAIL,
            what=f"POST {where} -> 404: no function at this route",
            why="DPS maps 404 to 400207 (CustomAllocationFailed)",
            fix=f"publish the app (scripts/deploy) and use the route {ALLOCATE_PATH}",
        )
    if status == 429 or status >= 500:
        return Finding(
            check="probe",
            status=Status.WARN,
            what=f"POST {where} -> {status}: the function is reachable but not healthy",
            why="DPS retries 429 and 5xx (10 times, ~7 minutes) while the device waits; 503 from "
            "this app means the policy file could not be loaded",
            fix="read the app's logs in Application Insights (traces for webhook.allocate)",
        )
    return Finding(
        check="probe",
        status=Status.FAIL,
        what=f"POST {where} -> {status}",
        why="DPS maps any other status to 400207 (CustomAllocationFailed)",
        fix="check access restrictions and the app's logs",
    )


def exit_code(findings: Sequence[Finding]) -> int:
    """1 when any check failed, else 0 (warnings do not fail the run)."""
    return EXIT_FAILED if any(f.status is Status.FAIL for f in findings) else EXIT_OK


def format_report(title: str, findings: Sequence[Finding]) -> str:
    """The human report: one line per check, then why/fix for the ones that are not ok."""
    lines = [f"doctor: {title}"]
    for finding in findings:
        label = {Status.OK: "ok", Status.WARN: "WARN", Status.FAIL: "FAIL"}[finding.status]
        lines.append(f"  {label:<5} {finding.check:<20} {finding.what}")
        if finding.status is not Status.OK:
            if finding.why:
                lines.append(f"{'':29}why: {finding.why}")
            if finding.fix:
                lines.append(f"{'':29}fix: {finding.fix}")
    counts = {status: sum(f.status is status for f in findings) for status in Status}
    lines.append(
        f"{counts[Status.OK]} ok, {counts[Status.WARN]} warning(s), {counts[Status.FAIL]} failed"
    )
    return "\n".join(lines)


def _fix_enrollment(enrollment: Enrollment, flags: str) -> str:
    if enrollment.emulator:
        return f"edit the group's entry in {enrollment.source} (the emulator config)"
    group = enrollment.enrollment_id or "<group>"
    return (
        f"az iot dps enrollment-group update -g <resource-group> --dps-name <dps> "
        f"--enrollment-id {group} {flags}"
    )


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_of(url: str) -> tuple[str, str, str]:
    try:
        parts = urlsplit(url)
        return (parts.scheme.lower(), (parts.netloc or "").lower(), parts.path.rstrip("/").lower())
    except ValueError:
        return ("", "", url)


def health_finding(state: Mapping[str, Any] | None, *, error: str = "") -> Finding:
    """What the local Functions host's /admin/host/status says about the app."""
    if state is None:
        return Finding(
            check="app-health",
            status=Status.FAIL,
            what=f"the hosted app's status could not be read: {error or 'no answer'}",
            why="DPS cannot reach the app either: every registration would wait, then fail",
            fix="start the local cloud with `make up` (it hosts the app)",
        )
    if state.get("state") == "Running":
        return Finding(
            check="app-health",
            status=Status.OK,
            what="the hosted app is ready: its policy loads and its Table storage answers",
        )
    errors = state.get("errors") or ["unknown"]
    return Finding(
        check="app-health",
        status=Status.FAIL,
        what="the hosted app cannot serve registrations: " + "; ".join(map(str, errors)),
        why="the webhook answers 429 (storage) or 503 (policy) and DPS retries each device for "
        "about seven minutes before failing it with 400207",
        fix="fix the setting named (local.settings.json) and restart with `make up`",
    )
