"""A time budget for one decision, on a clock the caller supplies (the core reads no clock).

Everything a decision does is bounded by the request limits and the policy (RE2 regexes run in
linear time, rules are indexed, hash rings are cached), so the budget is a backstop, not a
scheduler: the engine calls ``check`` between rules and between the hubs of a ring it builds, and
``DecisionBudgetExceeded`` stops the decision there. Work already cached (a hub's points on the
ring) stays cached, so a retry continues where the last attempt stopped.
"""

from __future__ import annotations

from collections.abc import Callable

from allocation.errors import DecisionBudgetExceeded


class DecisionBudget:
    """``seconds`` from now on ``clock``; ``check`` raises once they are spent."""

    def __init__(self, seconds: float, *, clock: Callable[[], float]) -> None:
        self.seconds = seconds
        self._clock = clock
        self._deadline = clock() + seconds

    def check(self) -> None:
        """Raise ``DecisionBudgetExceeded`` when the budget is spent."""
        if self._clock() > self._deadline:
            raise DecisionBudgetExceeded(self.seconds)
