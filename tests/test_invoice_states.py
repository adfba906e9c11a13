"""The e-invoice's transition table (payments/_invoice_states.py), with Hypothesis: whatever WeChat Pay's
fapiao query reports, in whatever order and however often, an invoice only moves forward along the table,
is reversed only when its payment was refunded, and ends where the last report says (or further)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payments._invoice_states import (
    REMOTE_EVENTS,
    STATES,
    TERMINAL,
    TRANSITIONS,
    InvalidTransition,
    observe,
    rank,
    step,
)

REMOTE = [*REMOTE_EVENTS, "", "UNKNOWN_STATUS"]


def test_the_table_is_the_documented_path() -> None:
    assert TRANSITIONS == {
        ("requested", "applied"): "applied",
        ("requested", "refused"): "failed",
        ("applied", "issued"): "issued",
        ("issued", "reverse"): "reversing",
        ("reversing", "reversed"): "reversed",
    }
    assert all(a in STATES and b in STATES for (a, _), b in TRANSITIONS.items())
    assert not any(a in TERMINAL for a, _ in TRANSITIONS)
    with pytest.raises(InvalidTransition):
        step("issued", "applied")
    with pytest.raises(InvalidTransition):
        step("failed", "applied")
    assert step("requested", "refused") == "failed"


@settings(max_examples=50, deadline=None)
@given(
    start=st.sampled_from(["applied", "issued"]),
    reports=st.lists(st.sampled_from(REMOTE), max_size=12),
    refunded_after=st.one_of(st.none(), st.integers(min_value=0, max_value=12)),
)
def test_reports_only_move_an_invoice_forward(
    start: str, reports: list[str], refunded_after: int | None
) -> None:
    state = start
    for i, remote in enumerate(reports):
        wanted = refunded_after is not None and i >= refunded_after
        nxt = observe(state, remote, reverse_wanted=wanted)
        assert nxt in STATES
        assert rank(nxt) >= rank(state), f"{state} moved back to {nxt} on {remote}"
        if rank(nxt) >= rank("reversing"):
            assert wanted, f"{state} reversed on {remote} without a refund"
        # every step taken is a move of the table
        if nxt != state:
            seq = ["requested", "applied", "issued", "reversing", "reversed"]
            events = {
                ("requested", "applied"): "applied",
                ("applied", "issued"): "issued",
                ("issued", "reversing"): "reverse",
                ("reversing", "reversed"): "reversed",
            }
            for a, b in zip(seq[rank(state) : rank(nxt)], seq[rank(state) + 1 : rank(nxt) + 1], strict=True):
                assert step(a, events[(a, b)]) == b
        # the invoice is at least where the report says (when the report may apply)
        event = REMOTE_EVENTS.get(remote)
        if event in ("applied", "issued") or (event in ("reverse", "reversed") and wanted):
            target = {
                "applied": "applied",
                "issued": "issued",
                "reverse": "reversing",
                "reversed": "reversed",
            }[event]
            assert rank(nxt) >= rank(target)
        state = nxt


@settings(max_examples=30, deadline=None)
@given(reports=st.lists(st.sampled_from(REMOTE), max_size=8), wanted=st.booleans())
def test_terminal_states_stay(reports: list[str], wanted: bool) -> None:
    for terminal in TERMINAL:
        state = terminal
        for remote in reports:
            state = observe(state, remote, reverse_wanted=wanted)
        assert state == terminal
