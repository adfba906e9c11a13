"""The station back office, pure rules (no I/O): staff accounts and logins, the shift handover (交班) state
machine and its reconciliation, and the sales report's shapes."""

from backoffice._handover import (
    DEFAULT_TOLERANCE_FEN,
    EVENTS,
    STATES,
    TRANSITIONS,
    HandoverRefused,
    NozzleReading,
    Reconciliation,
    Tenders,
    apply_corrections,
    check_money,
    next_state,
    reconcile,
)
from backoffice._staff import (
    LOCKOUT,
    MAX_FAILURES,
    ROLES,
    SESSION_TTL,
    after_attempt,
    check_password,
    check_username,
    hash_password,
    may_create,
    verify_password,
)

__all__ = [
    "DEFAULT_TOLERANCE_FEN",
    "EVENTS",
    "LOCKOUT",
    "MAX_FAILURES",
    "ROLES",
    "SESSION_TTL",
    "STATES",
    "TRANSITIONS",
    "HandoverRefused",
    "NozzleReading",
    "Reconciliation",
    "Tenders",
    "after_attempt",
    "apply_corrections",
    "check_money",
    "check_password",
    "check_username",
    "hash_password",
    "may_create",
    "next_state",
    "reconcile",
    "verify_password",
]
