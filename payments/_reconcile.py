"""Reconciliation of a day's WeChat Pay trade bill with our payments, refunds and controller sales (pure:
the caller loads the bill and the records; `python -m ingest reconcile` does).

Every bill row is matched:
- a payment row (交易状态 SUCCESS) to our payment of that out_trade_no: paid here too, same amount and
  transaction id, for exactly one controller sale, and that sale settled: cleared at the site by our
  CLEAR, or (the cashier took it first) our payment refunded in full;
- a refund row (REFUND) to our refund of that out_refund_no: succeeded, same amount.
And every payment we recorded paid that day must be in the bill. Each difference is a finding of a kind
that names it (the kinds of reconciliation_alerts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from payments._bill import BillRow


@dataclass(frozen=True)
class OurPayment:
    out_trade_no: str
    state: str
    amount_fen: int
    paid_fen: int | None
    refunded_fen: int
    transaction_id: str | None
    paid_at: datetime | None
    sale_id: int | None = None
    site_state: str | None = None
    fsc_tx_id: str | None = None
    sale_state: str | None = None
    sale_cleared_by: str | None = None
    duplicate_of: str | None = None


@dataclass(frozen=True)
class OurRefund:
    out_refund_no: str
    out_trade_no: str
    refund_fen: int
    state: str


@dataclass(frozen=True)
class Finding:
    kind: str
    ref: str
    detail: dict[str, Any]


@dataclass
class Report:
    bill_date: date
    matched: list[str] = field(default_factory=list)
    mismatches: list[Finding] = field(default_factory=list)
    missing: list[Finding] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        return [*self.mismatches, *self.missing]

    def as_dict(self) -> dict[str, Any]:
        return {
            "bill_date": self.bill_date.isoformat(),
            "matched": sorted(self.matched),
            "mismatches": [f.__dict__ for f in self.mismatches],
            "missing": [f.__dict__ for f in self.missing],
        }


def settlement_problem(p: OurPayment) -> str | None:
    """Why a paid sale payment is not settled at the site (None: it is)."""
    if p.sale_id is None:
        return "the payment has no controller sale"
    if p.site_state == "cleared" and p.sale_cleared_by == p.fsc_tx_id:
        return None
    if p.site_state == "paid_elsewhere" and p.refunded_fen == (p.paid_fen or 0):
        return None
    if p.duplicate_of is not None:  # paid after payment duplicate_of paid the sale: settled once refunded
        if p.refunded_fen == (p.paid_fen or 0):
            return None
        return f"a duplicate of {p.duplicate_of}, refunded {p.refunded_fen} of {p.paid_fen} fen"
    return (
        f"sale {p.sale_id}: site state {p.site_state}, sale {p.sale_state} cleared by {p.sale_cleared_by},"
        f" refunded {p.refunded_fen} of {p.paid_fen} fen"
    )


def reconcile(
    bill_date: date,
    rows: Iterable[BillRow],
    payments: Mapping[str, OurPayment],
    refunds: Mapping[str, OurRefund],
    paid_that_day: Iterable[str],
) -> Report:
    report = Report(bill_date)
    in_bill: set[str] = set()
    for row in rows:
        if row.trade_state == "REFUND":
            _refund_row(report, row, refunds)
            continue
        in_bill.add(row.out_trade_no)
        p = payments.get(row.out_trade_no)
        if p is None:
            report.missing.append(
                Finding(
                    "missing_payment",
                    row.out_trade_no,
                    {"transaction_id": row.transaction_id, "order_fen": row.order_fen},
                )
            )
            continue
        if p.state != "paid":
            report.mismatches.append(
                Finding("state_mismatch", p.out_trade_no, {"bill": row.trade_state, "ours": p.state})
            )
            continue
        if row.order_fen != p.amount_fen or row.transaction_id != p.transaction_id:
            report.mismatches.append(
                Finding(
                    "amount_mismatch",
                    p.out_trade_no,
                    {
                        "bill_fen": row.order_fen,
                        "ours_fen": p.amount_fen,
                        "bill_transaction_id": row.transaction_id,
                        "ours_transaction_id": p.transaction_id,
                    },
                )
            )
            continue
        if p.sale_id is None:
            report.mismatches.append(Finding("no_sale", p.out_trade_no, {}))
            continue
        problem = settlement_problem(p)
        if problem is not None:
            report.mismatches.append(Finding("sale_not_settled", p.out_trade_no, {"problem": problem}))
            continue
        report.matched.append(p.out_trade_no)
    for no in sorted(set(paid_that_day) - in_bill):
        p = payments.get(no)
        report.missing.append(Finding("missing_in_bill", no, {"paid_fen": p.paid_fen if p else None}))
    return report


def _refund_row(report: Report, row: BillRow, refunds: Mapping[str, OurRefund]) -> None:
    r = refunds.get(row.out_refund_no)
    if (
        r is None
        or r.state != "success"
        or r.refund_fen != row.refund_fen
        or r.out_trade_no != row.out_trade_no
    ):
        report.mismatches.append(
            Finding(
                "refund_mismatch",
                row.out_refund_no or row.out_trade_no,
                {
                    "bill_fen": row.refund_fen,
                    "ours_fen": r.refund_fen if r else None,
                    "ours_state": r.state if r else None,
                },
            )
        )
        return
    report.matched.append(row.out_refund_no)
