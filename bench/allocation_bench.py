"""Decisions per second of the pure core, beside a straight port of the tutorial's function.

A decision is what the webhook does per request after JSON decoding: parse the request into
values, decide, build the response body. The baseline does the same for the tutorial's two
suffix checks, written the way the tutorial's C# function is (string tests on a dict).

Policies: 10 or 1,000 rules (suffix, prefix, exact, glob and regex matchers, as a fleet of
device models would have), hashed over 10 or 50 linked hubs (50: the most DPS links, and the webhook's limit). Probe ids hit rules spread through
the file, and some match no rule (the default rule hashes them).
"""

from __future__ import annotations

import statistics
import timeit
from pathlib import Path
from typing import Any

from allocation import Assignment, decide, load_policy, parse_request, response_body


def tutorial_baseline(document: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The tutorial's function, ported straight: suffix checks and a hub-name substring search."""
    context = document["deviceRuntimeContext"]
    registration_id = context["registrationId"]
    hubs = document["linkedHubs"]
    if registration_id.endswith("-contoso-tstrsd-007"):
        hub = next((h for h in hubs if "-toasters-" in h), None)
        twin = {
            "tags": {"deviceType": "toaster"},
            "properties": {"desired": {"state": "ready", "darknessSetting": "medium"}},
        }
    elif registration_id.endswith("-contoso-hpsd-088"):
        hub = next((h for h in hubs if "-heatpumps-" in h), None)
        twin = {
            "tags": {"deviceType": "heatpump"},
            "properties": {"desired": {"state": "on", "temperatureSetting": "65"}},
        }
    else:
        return 400, {"message": "Unrecognized device registration"}
    if hub is None:
        return 400, {"message": "No hub"}
    return 200, {"iotHubHostName": hub, "initialTwin": twin}


def policy_text(rules: int) -> str:
    kinds = ("suffix", "prefix", "exact", "glob", "regex")
    lines = ['[defaults]\nunmatched = "hash"\n']
    for n in range(rules):
        kind = kinds[n % len(kinds)]
        value = {
            "suffix": f"-model{n}",
            "prefix": f"site{n}-",
            "exact": f"device-{n}",
            "glob": f"lab{n}-*",
            "regex": f"r{n}-(?P<unit>[0-9]+)",
        }[kind]
        twin = f'tags = {{ model = "m{n}", id = "{{registration_id}}" }}\ndesired = {{ interval = {n} }}'
        lines.append(
            f'[[rules]]\nname = "rule {n}"\n[rules.match]\nregistration_id = {{ {kind} = "{value}" }}\n'
            f"[rules.initial_twin]\n{twin}\n"
        )
    return "\n".join(lines)


def probes(rules: int, hubs: list[str]) -> list[dict[str, Any]]:
    ids = [
        f"unit-42-model{rules - 5}",  # suffix rule near the end
        f"site{rules // 2 - 4}-x",  # prefix rule in the middle (n % 5 == 1)
        "device-2",  # exact rule at the start
        "no-rule-matches-this-id",  # default rule: hash
        f"breakroom{rules}-contoso-tstrsd-007",
    ]
    return [
        {
            "enrollmentGroup": {"enrollmentGroupId": "fleet"},
            "deviceRuntimeContext": {"registrationId": i},
            "linkedHubs": hubs,
        }
        for i in ids
    ]


def tutorial_probes(hubs: list[str]) -> list[dict[str, Any]]:
    ids = ["breakroom499-contoso-tstrsd-007", "mainbuilding167-contoso-hpsd-088", "coffee-1"]
    return [{"deviceRuntimeContext": {"registrationId": i}, "linkedHubs": hubs} for i in ids]


def per_call_us(function: Any, documents: list[dict[str, Any]], *, quick: bool) -> float:
    """Median over repeats of the mean time per call, in microseconds."""
    number = 2_000 if quick else 20_000
    timer = timeit.Timer(lambda: [function(d) for d in documents])
    runs = timer.repeat(repeat=3 if quick else 7, number=number // len(documents))
    calls = (number // len(documents)) * len(documents)
    return statistics.median(runs) / calls * 1e6


def ours(policy: Any) -> Any:
    def call(document: dict[str, Any]) -> Any:
        decision = decide(policy, parse_request(document))
        return response_body(decision) if isinstance(decision, Assignment) else decision

    return call


def run(*, quick: bool = False) -> str:
    rows = []
    for hub_count in (10, 50):
        hubs = [
            f"contoso-{kind}-{n}.azure-devices.net"
            for n in range(hub_count // 2)
            for kind in ("toasters", "heatpumps")
        ]
        baseline = per_call_us(tutorial_baseline, tutorial_probes(hubs), quick=quick)
        rows.append((hub_count, "tutorial port (baseline)", baseline, baseline))
        tutorial = load_policy(open_example(), source="tutorial-policy.toml")
        rows.append(
            (
                hub_count,
                "tutorial policy",
                per_call_us(ours(tutorial), tutorial_probes(hubs), quick=quick),
                baseline,
            )
        )
        for rule_count in (10, 1000):
            policy = load_policy(policy_text(rule_count), source="bench.toml")
            documents = probes(rule_count, hubs)
            rows.append(
                (
                    hub_count,
                    f"{rule_count} rules, hash",
                    per_call_us(ours(policy), documents, quick=quick),
                    baseline,
                )
            )
    lines = [
        "### Allocation decisions (parse + decide + response body)",
        "",
        "| linked hubs | policy | µs per decision | decisions/s | vs baseline |",
        "|---:|---|---:|---:|---:|",
    ]
    for hubs_n, name, micros, base in rows:
        lines.append(
            f"| {hubs_n} | {name} | {micros:.1f} | {1e6 / micros:,.0f} | {micros / base:.1f}x |"
        )
    return "\n".join(lines)


def open_example() -> str:
    return (Path(__file__).resolve().parents[1] / "examples" / "tutorial-policy.toml").read_text()
