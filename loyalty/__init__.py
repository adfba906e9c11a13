"""Points rules, pure (no I/O): what a paid fill-up earns, what points are worth at the pump, the
two-phase hold of a redemption, and when earned points expire (FIFO lots).

The ledger that records them is store/_ledger.py; the rules are data (data/loyalty/rules.toml).
"""

from loyalty._expiry import Lot, expiry_for, take_fifo
from loyalty._holds import HOLD_TRANSITIONS, HoldState, InvalidHoldTransition, next_hold_state
from loyalty._rules import (
    EarnRules,
    RedemptionRules,
    Rules,
    earn_points,
    redemption_fen,
    redemption_problem,
    refund_share,
    rules_from_mapping,
)

__all__ = [
    "HOLD_TRANSITIONS",
    "EarnRules",
    "HoldState",
    "InvalidHoldTransition",
    "Lot",
    "RedemptionRules",
    "Rules",
    "earn_points",
    "expiry_for",
    "next_hold_state",
    "redemption_fen",
    "redemption_problem",
    "refund_share",
    "rules_from_mapping",
    "take_fifo",
]
