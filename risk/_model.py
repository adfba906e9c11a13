"""Risk decisions as values: the three outcomes, a rule, a rule set with its version, a decision."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

POINTS = ("bind", "pay", "redeem", "price")
OUTCOMES = ("allow", "review", "deny")  # in rising severity: the worst fired rule decides
SEVERITY = {o: i for i, o in enumerate(OUTCOMES)}


@dataclass(frozen=True)
class Rule:
    """`expr` is a rule-engine expression over the facts of its point; when it matches, the rule fires."""

    name: str
    point: str
    expr: str
    outcome: str
    reason: str


@dataclass(frozen=True)
class Fired:
    rule: str
    outcome: str
    reason: str
    expr: str

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "outcome": self.outcome, "reason": self.reason, "expr": self.expr}


@dataclass(frozen=True)
class Decision:
    """What an evaluation answers: the outcome, every rule that fired, the facts seen and the version."""

    point: str
    outcome: str
    fired: tuple[Fired, ...]
    facts: Mapping[str, Any]
    rules_version: str
    id: int | None = None  # the decision's row once logged
    subject: Mapping[str, Any] = field(default_factory=dict)

    @property
    def reasons(self) -> list[str]:
        return [f.reason for f in self.fired if f.outcome == self.outcome]


def worst(outcomes: list[str]) -> str:
    return max(outcomes, key=SEVERITY.__getitem__, default="allow")
