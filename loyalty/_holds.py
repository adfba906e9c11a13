"""The two-phase hold of a redemption (TigerBeetle's pending transfer): taken when the order is made,
posted when the payment is recorded, voided when the order fails, expires or its lock is released.
A hold resolves at most once. The barrier phase 'void_first' records a void that arrived before its
hold: the hold is then refused (a cancel that overtook its try)."""

from __future__ import annotations

from enum import StrEnum

from geo._errors import Conflict


class HoldState(StrEnum):
    ABSENT = "absent"  # nothing recorded for the reference yet
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"


class InvalidHoldTransition(Conflict):
    """A hold asked to move where its table does not allow (a posted hold voided, for instance)."""


# (state, event) -> next state. Events: hold, post, void. Repeats of a finished event are no-ops
# (idempotent); a void with no hold records VOIDED so a late hold is refused.
HOLD_TRANSITIONS: dict[tuple[HoldState, str], HoldState] = {
    (HoldState.ABSENT, "hold"): HoldState.PENDING,
    (HoldState.ABSENT, "void"): HoldState.VOIDED,  # void before its hold: the barrier remembers it
    (HoldState.PENDING, "hold"): HoldState.PENDING,  # a retried pay request
    (HoldState.PENDING, "post"): HoldState.POSTED,
    (HoldState.PENDING, "void"): HoldState.VOIDED,
    (HoldState.POSTED, "post"): HoldState.POSTED,  # a replayed notification
    (HoldState.POSTED, "hold"): HoldState.POSTED,
    (HoldState.VOIDED, "void"): HoldState.VOIDED,
    (HoldState.VOIDED, "hold"): HoldState.VOIDED,  # a hold after its void never takes points
}


def next_hold_state(state: HoldState, event: str) -> HoldState:
    """The state after `event`; InvalidHoldTransition for a move the table lacks (post without a pending
    hold, void of a posted one, post of a voided one)."""
    try:
        return HOLD_TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidHoldTransition(f"a {state.value} hold cannot take '{event}'") from None
