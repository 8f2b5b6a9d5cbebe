"""Errors of the allocation core.

    AllocationError
    ├── RequestError            the AllocationRequest is malformed -> HTTP 400, names the field
    ├── PolicyError             the policy file is invalid -> reported at load time with file,
    │                           rule and field
    └── DecisionBudgetExceeded  a decision ran out of its time budget -> HTTP 429, DPS retries

Messages never quote request values that could be secret; they name fields and expectations.
"""

from __future__ import annotations


class AllocationError(Exception):
    """Base class of every error this package raises."""


class RequestError(AllocationError):
    """The AllocationRequest is not what DPS documents; the webhook answers 400."""

    http_status = 400

    def __init__(self, field: str, expected: str) -> None:
        super().__init__(f"{field}: expected {expected}")
        self.field = field
        self.expected = expected


class PolicyError(AllocationError):
    """The policy file is invalid. Raised while loading, never while deciding."""

    def __init__(self, source: str, location: str, message: str) -> None:
        super().__init__(f"{source}: {location}: {message}")
        self.source = source
        self.location = location
        self.message = message


class DecisionBudgetExceeded(AllocationError):
    """A decision ran past its time budget (``allocation.budget``); the webhook answers 429."""

    http_status = 429

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the decision took longer than its budget of {seconds:g} s")
        self.seconds = seconds
