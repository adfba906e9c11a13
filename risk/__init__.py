"""Risk control: rules as data (data/risk/rules.json plus database overrides, rule-engine expressions),
evaluated at bind, pay, redemption and price change into allow, review or deny, each decision logged with
the facts and rules behind it. Pure apart from the connection and Redis client callers pass in."""

from risk._engine import RuleSet, decide, parse_rules_file, validate_rule
from risk._errors import InvalidRule, RiskDenied, RiskError, RiskHeld
from risk._evaluate import enforce, evaluate
from risk._model import OUTCOMES, POINTS, Decision, Fired, Rule
from risk._signals import (
    TANK_LITRES,
    VEHICLE_CLASSES,
    keyed_hash,
    peer_ratio,
    price_change_facts,
    tank_litres,
    unusual_hour,
)
from risk._velocity import Window, observe, redeem_windows

__all__ = [
    "OUTCOMES",
    "POINTS",
    "TANK_LITRES",
    "VEHICLE_CLASSES",
    "Decision",
    "Fired",
    "InvalidRule",
    "RiskDenied",
    "RiskError",
    "RiskHeld",
    "Rule",
    "RuleSet",
    "Window",
    "decide",
    "enforce",
    "evaluate",
    "keyed_hash",
    "observe",
    "parse_rules_file",
    "peer_ratio",
    "price_change_facts",
    "redeem_windows",
    "tank_litres",
    "unusual_hour",
    "validate_rule",
]
