"""The e-invoice's states and the only moves between them (pure: no I/O).

    requested --applied--> applied --issued--> issued --reverse--> reversing --reversed--> reversed
    requested --refused--> failed

`observe` maps what WeChat Pay's fapiao query reports (ISSUE_ACCEPTED, ISSUED, REVERSE_ACCEPTED, REVERSED)
onto our state: a report never moves an invoice back (a late or repeated answer changes nothing), and a
reversal is reported only for an invoice we asked to reverse.
"""

from __future__ import annotations

STATES = ("requested", "applied", "issued", "reversing", "reversed", "failed")
TERMINAL = frozenset({"reversed", "failed"})

# (state, event) -> next state
TRANSITIONS: dict[tuple[str, str], str] = {
    ("requested", "applied"): "applied",
    ("requested", "refused"): "failed",
    ("applied", "issued"): "issued",
    ("issued", "reverse"): "reversing",
    ("reversing", "reversed"): "reversed",
}

# what the fapiao query says -> the event it is
REMOTE_EVENTS = {
    "ISSUE_ACCEPTED": "applied",
    "ISSUED": "issued",
    "REVERSE_ACCEPTED": "reverse",
    "REVERSED": "reversed",
}


class InvalidTransition(ValueError):
    pass


def step(state: str, event: str) -> str:
    """The state after `event`; InvalidTransition when the table has no such move."""
    nxt = TRANSITIONS.get((state, event))
    if nxt is None:
        raise InvalidTransition(f"an invoice {state} cannot take {event}")
    return nxt


def observe(state: str, remote: str, *, reverse_wanted: bool) -> str:
    """Our state once WeChat Pay reports `remote` for the invoice: every move the report implies, in
    order, that the table allows (an issued-then-reversed invoice seen first as REVERSED included);
    the state unchanged for a report that would move it back, or a reversal nobody asked for."""
    event = REMOTE_EVENTS.get(remote)
    if event is None or state in TERMINAL:
        return state
    if event in ("reverse", "reversed") and not reverse_wanted:
        return state
    path = ("applied", "issued", "reverse", "reversed")
    target = path.index(event)
    current = state
    for e in path[: target + 1]:
        nxt = TRANSITIONS.get((current, e))
        if nxt is not None:
            current = nxt
    return current


def rank(state: str) -> int:
    """How far along the issue-then-reverse path a state is (failed: off the path)."""
    return {"requested": 0, "applied": 1, "issued": 2, "reversing": 3, "reversed": 4}.get(state, -1)
