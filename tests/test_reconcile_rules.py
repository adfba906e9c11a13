"""When the day's reconciliation counts a paid sale payment as settled (payments/_reconcile.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from payments._reconcile import OurPayment, settlement_problem

_PAID = {
    "state": "paid",
    "amount_fen": 3_060,
    "paid_fen": 3_060,
    "transaction_id": "4200000000000000000009",
    "paid_at": datetime(2026, 11, 27, 4, 0, tzinfo=UTC),
    "sale_id": 1,
    "fsc_tx_id": "tx-ours",
}


def _payment(**kw: object) -> OurPayment:
    return OurPayment(**({"out_trade_no": "LF-A", "refunded_fen": 0} | _PAID | kw))  # type: ignore[arg-type]


def test_a_sale_cleared_by_our_payment_or_refunded_when_paid_elsewhere_is_settled() -> None:
    assert settlement_problem(_payment(site_state="cleared", sale_cleared_by="tx-ours")) is None
    assert settlement_problem(_payment(site_state="paid_elsewhere", refunded_fen=3_060)) is None


def test_a_duplicate_is_settled_once_refunded_in_full() -> None:
    # paid late after the driver's newer order paid the sale: its link stays 'unlocked', its money goes back
    dup = _payment(
        site_state="unlocked", sale_state="cleared", sale_cleared_by="tx-newer", duplicate_of="LF-B"
    )
    assert settlement_problem(dup) == "a duplicate of LF-B, refunded 0 of 3060 fen"
    assert settlement_problem(_payment(**{**dup.__dict__, "refunded_fen": 1_000})) == (
        "a duplicate of LF-B, refunded 1000 of 3060 fen"
    )
    assert settlement_problem(_payment(**{**dup.__dict__, "refunded_fen": 3_060})) is None


def test_a_paid_payment_left_unlocked_is_not_settled() -> None:
    problem = settlement_problem(_payment(site_state="unlocked", sale_state="payable"))
    assert problem == "sale 1: site state unlocked, sale payable cleared by None, refunded 0 of 3060 fen"
    assert settlement_problem(_payment(sale_id=None)) == "the payment has no controller sale"
