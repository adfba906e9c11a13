"""Controller sales and live progress, checked (pure: no I/O).

A sale is payable by the service only when its figures agree with each other:
- volume = end totaliser - start totaliser of its nozzle (the totaliser moved by exactly the volume);
- amount = unit price x volume, rounded half up to the fen, within `AMOUNT_TOLERANCE_FEN`;
- the site never reported different figures for the same sale (volume, amount, price, totalisers are
  written once: a later report that differs is a data-link fault, the sale goes to review).
A sale that breaks one of these keeps the site's figures and gets a `review_reason`: it is never offered
for payment. Volumes are integer millilitres, money integer fen.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

# Rounding of the controller's amount: price x volume is rounded to the fen once; a controller that
# rounds each litre or truncates may differ by one fen, not more.
AMOUNT_TOLERANCE_FEN = 1
# Plausible bounds of one sale or progress report: a road tanker's fill is far below 2,000 L; fuel in
# China costs a few CNY per litre (2 to 50 CNY bounds every grade with room).
MAX_SALE_ML = 2_000_000
MIN_UNIT_PRICE_FEN = 200
MAX_UNIT_PRICE_FEN = 5_000
MAX_SALE_FEN = MAX_SALE_ML * MAX_UNIT_PRICE_FEN // 1000
STATES = ("payable", "locked", "cleared")
# The state of a core TRANSACTION report: unpaid, payable or locked (OpenFSC "open"); it never moves a
# stored sale's state.
OPEN = "open"


@dataclass(frozen=True)
class SaleFigures:
    """One sale as the site reports it (a SALE line, or a core TRANSACTION without totalisers)."""

    pump_no: int
    site_tx_id: str
    grade: str
    volume_ml: int
    amount_fen: int
    unit_price_fen: int
    state: str
    nozzle_no: int | None = None
    totaliser_start_ml: int | None = None
    totaliser_end_ml: int | None = None
    offline: bool = False
    cleared_by: str | None = None
    ended_at: datetime | None = None


def expected_amount_fen(unit_price_fen: int, volume_ml: int) -> int:
    """unit price (fen per litre) x volume (ml), rounded half up to the fen."""
    return (unit_price_fen * volume_ml + 500) // 1000


def plausibility_problem(volume_ml: int, amount_fen: int, unit_price_fen: int | None = None) -> str | None:
    """Why the figures cannot be real (the line is refused), or None."""
    if not 0 <= volume_ml <= MAX_SALE_ML:
        return f"volume {volume_ml} ml outside 0..{MAX_SALE_ML} ml"
    if not 0 <= amount_fen <= MAX_SALE_FEN:
        return f"amount {amount_fen} fen outside 0..{MAX_SALE_FEN} fen"
    if unit_price_fen is not None and not MIN_UNIT_PRICE_FEN <= unit_price_fen <= MAX_UNIT_PRICE_FEN:
        return f"unit price {unit_price_fen} fen/L outside {MIN_UNIT_PRICE_FEN}..{MAX_UNIT_PRICE_FEN} fen/L"
    return None


def review_reason(sale: SaleFigures) -> str | None:
    """Why a sale must go to review instead of payment, or None when its figures agree."""
    if sale.totaliser_start_ml is None or sale.totaliser_end_ml is None:
        return "no totaliser readings: the volume cannot be checked against the nozzle's totaliser"
    delta = sale.totaliser_end_ml - sale.totaliser_start_ml
    if delta != sale.volume_ml:
        return f"volume {sale.volume_ml} ml differs from the totaliser delta {delta} ml"
    expected = expected_amount_fen(sale.unit_price_fen, sale.volume_ml)
    if abs(sale.amount_fen - expected) > AMOUNT_TOLERANCE_FEN:
        return (
            f"amount {sale.amount_fen} fen differs from unit price x volume = {expected} fen "
            f"by more than {AMOUNT_TOLERANCE_FEN} fen"
        )
    return None


def _figures(s: SaleFigures) -> tuple[object, ...]:
    return (s.pump_no, s.grade, s.volume_ml, s.amount_fen, s.unit_price_fen)


def merge(
    stored: SaleFigures | None, stored_review: str | None, new: SaleFigures
) -> tuple[SaleFigures, str | None]:
    """The sale after a new report, and its review reason.

    Figures are written once: a report whose volume, amount, price, grade, pump or totalisers differ
    from the stored ones leaves them as they were and sends the sale to review (a data-link fault must
    never change what a customer is billed). Totalisers fill in when first reported. The state follows
    the site's SALE reports (a core TRANSACTION, state "open", leaves it), except that a cleared sale
    stays cleared. A conflict's reason is kept for good."""
    if stored is None:
        new = replace(new, state="payable") if new.state == OPEN else new
        return new, review_reason(new)
    conflict: str | None = None
    if _figures(stored) != _figures(new):
        conflict = (
            f"site reported different figures for sale {new.site_tx_id}: pump/grade/volume/amount/price "
            f"{_figures(new)} after {_figures(stored)}"
        )
    totals = (stored.totaliser_start_ml, stored.totaliser_end_ml)
    if new.totaliser_start_ml is not None and new.totaliser_end_ml is not None:
        reported = (new.totaliser_start_ml, new.totaliser_end_ml)
        if totals == (None, None):
            totals = reported
        elif totals != reported and conflict is None:
            conflict = (
                f"site reported different totalisers for sale {new.site_tx_id}: {reported} after {totals}"
            )
    state = stored.state if stored.state == "cleared" or new.state == OPEN else new.state
    merged = replace(
        stored,
        nozzle_no=stored.nozzle_no if stored.nozzle_no is not None else new.nozzle_no,
        totaliser_start_ml=totals[0],
        totaliser_end_ml=totals[1],
        state=state,
        offline=stored.offline or new.offline,
        cleared_by=new.cleared_by or stored.cleared_by,
        ended_at=stored.ended_at or new.ended_at,
    )
    sticky = stored_review if stored_review and stored_review.startswith("site reported") else None
    return merged, sticky or conflict or review_reason(merged)
