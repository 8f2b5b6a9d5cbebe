"""The pure core that decides where a device goes.

Given a DPS AllocationRequest and an allocation policy, decide which linked IoT hub the device is
assigned to, with which initial twin and which payload — or deny it with a reason.

Nothing in this package does I/O, reads the environment or the clock, or imports an Azure SDK:
the Functions app (``function_app.py``) and the tests feed it values and read values back.

Modules:
    request   the AllocationRequest, parsed once at the edge into frozen values, within limits
    strict_json  request bodies decoded strictly: standard JSON, valid text, bounded size and depth
    policy    the policy file (TOML) parsed and validated into a ``Policy``
    rules     a rule as a value: what it matches, what it decides
    matching  the rule index: which rules can apply to a registration id, fast
    hashing   weighted consistent hashing over hubs
    template  initial twin and payload templates with placeholders
    cache     caches bounded in bytes
    budget    the per-decision time budget
    engine    ``decide(policy, request) -> Assignment | Denial``
    response  the AllocationResponse body DPS reads
    errors    the exception tree
"""

from allocation.engine import Assignment, Decision, Denial, decide
from allocation.errors import AllocationError, PolicyError, RequestError
from allocation.policy import Policy, default_policy, load_policy, parse_policy
from allocation.request import AllocationRequest, EnrollmentKind, parse_request
from allocation.response import response_body

__all__ = [
    "AllocationError",
    "AllocationRequest",
    "Assignment",
    "Decision",
    "Denial",
    "EnrollmentKind",
    "Policy",
    "PolicyError",
    "RequestError",
    "decide",
    "default_policy",
    "load_policy",
    "parse_policy",
    "parse_request",
    "response_body",
]
