"""Risk errors; api/_errors.py maps them to HTTP (403 with the decision's id)."""

from __future__ import annotations

from geo import FuelError


class RiskError(FuelError, PermissionError):
    """Refused by risk control: `decision_id` names the logged decision (its rules and facts)."""

    def __init__(self, message: str, decision_id: int | None) -> None:
        super().__init__(message)
        self.decision_id = decision_id


class RiskDenied(RiskError):
    """A deny: nothing happens, no money moves (403)."""


class RiskHeld(RiskError):
    """A review: nothing happens until an operator approves the decision (403; retry after approval)."""


class InvalidRule(FuelError, ValueError):
    """A rule that does not parse, names an unknown point or outcome (422 on the override API)."""
