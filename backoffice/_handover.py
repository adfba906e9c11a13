"""The shift handover (交班) as a pure state machine, and its reconciliation.

States: `open` (the shift is running) -> `counting` (closed: the controller's totaliser readings are taken,
the attendant enters cash, card and the counted cash) -> `awaiting_incoming` (the outgoing attendant
signed) -> `signed` (the incoming attendant signed: the figures are final). A signed handover is only
corrected by correction entries, each audited; the figures it was signed with never change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from geo._errors import Conflict, InvalidInput

State = Literal["open", "counting", "awaiting_incoming", "signed"]
Event = Literal["close", "enter_tenders", "sign_outgoing", "sign_incoming", "correct"]
STATES: tuple[State, ...] = ("open", "counting", "awaiting_incoming", "signed")
EVENTS: tuple[Event, ...] = ("close", "enter_tenders", "sign_outgoing", "sign_incoming", "correct")

# (state, event) -> next state; anything else is refused.
TRANSITIONS: dict[tuple[State, Event], State] = {
    ("open", "close"): "counting",
    ("counting", "enter_tenders"): "counting",
    ("counting", "sign_outgoing"): "awaiting_incoming",
    ("awaiting_incoming", "sign_incoming"): "signed",
    ("signed", "correct"): "signed",
}
DEFAULT_TOLERANCE_FEN = 500  # 5 yuan of counted cash either way is "balanced"


class HandoverRefused(Conflict):
    """An event the handover's state does not allow (409)."""


def next_state(state: State, event: Event) -> State:
    """The state after `event`, or HandoverRefused naming why not."""
    nxt = TRANSITIONS.get((state, event))
    if nxt is None:
        if state == "signed":
            raise HandoverRefused(
                f"the handover is signed and cannot be changed by {event}: add a correction entry instead"
            )
        allowed = [e for (s, e) in TRANSITIONS if s == state]
        raise HandoverRefused(f"a handover in state {state} cannot {event}: it can {' or '.join(allowed)}")
    return nxt


@dataclass(frozen=True)
class NozzleReading:
    """One nozzle over a shift: the controller's volume totaliser at the start and the end (ml), the sales
    the controller reported in between, and their amount (the sum of sales: right across a price change)."""

    pump_no: int
    nozzle_no: int | None  # None: sales the controller reported without a nozzle (no totaliser: 0 to 0)
    grade: str
    opening_ml: int
    closing_ml: int
    sales: int
    sales_ml: int
    amount_fen: int

    @property
    def meter_ml(self) -> int:
        return self.closing_ml - self.opening_ml

    @property
    def unreported_ml(self) -> int:
        """Litres the totaliser moved by without a reported sale (a missing sale), in ml."""
        return self.meter_ml - self.sales_ml


@dataclass(frozen=True)
class Tenders:
    wechat_fen: int
    cash_fen: int
    card_fen: int
    counted_cash_fen: int


@dataclass(frozen=True)
class Reconciliation:
    sales_fen: int
    wechat_fen: int
    card_fen: int
    cash_declared_fen: int
    expected_cash_fen: int
    counted_cash_fen: int
    cash_difference_fen: int  # counted - expected: negative is a shortfall
    tendered_fen: int
    tender_difference_fen: int  # wechat + cash + card - sales
    meter_ml: int
    sales_ml: int
    unreported_ml: int
    tolerance_fen: int
    status: Literal["balanced", "short", "over"]


def check_money(name: str, fen: int, *, maximum: int = 100_000_000) -> int:
    """A plausible amount of fen for one shift (0 to 1,000,000 yuan)."""
    if isinstance(fen, bool) or not isinstance(fen, int) or not 0 <= fen <= maximum:
        raise InvalidInput(name, f"must be whole fen between 0 and {maximum}, got {fen!r}")
    return fen


def reconcile(
    readings: Iterable[NozzleReading], tenders: Tenders, *, tolerance_fen: int = DEFAULT_TOLERANCE_FEN
) -> Reconciliation:
    """Expected against actual. Sales come from the controller (sum of sales per nozzle, which stays right
    across a mid-shift price change, unlike volume x one price); WeChat is what our payments received;
    the cash expected in the drawer is sales less WeChat less card; the difference is counted - expected,
    within `tolerance_fen` either way is balanced."""
    rs = list(readings)
    sales = sum(r.amount_fen for r in rs)
    expected_cash = sales - tenders.wechat_fen - tenders.card_fen
    diff = tenders.counted_cash_fen - expected_cash
    tendered = tenders.wechat_fen + tenders.cash_fen + tenders.card_fen
    status: Literal["balanced", "short", "over"] = (
        "balanced" if abs(diff) <= tolerance_fen else ("short" if diff < 0 else "over")
    )
    return Reconciliation(
        sales_fen=sales,
        wechat_fen=tenders.wechat_fen,
        card_fen=tenders.card_fen,
        cash_declared_fen=tenders.cash_fen,
        expected_cash_fen=expected_cash,
        counted_cash_fen=tenders.counted_cash_fen,
        cash_difference_fen=diff,
        tendered_fen=tendered,
        tender_difference_fen=tendered - sales,
        meter_ml=sum(r.meter_ml for r in rs),
        sales_ml=sum(r.sales_ml for r in rs),
        unreported_ml=sum(r.unreported_ml for r in rs),
        tolerance_fen=tolerance_fen,
        status=status,
    )


def apply_corrections(tenders: Tenders, corrections: Iterable[Mapping[str, object]]) -> Tenders:
    """The tenders after correction entries ({"field", "delta_fen"}), oldest first."""
    values = {
        "cash_fen": tenders.cash_fen,
        "card_fen": tenders.card_fen,
        "counted_cash_fen": tenders.counted_cash_fen,
    }
    for c in corrections:
        field, delta = str(c["field"]), c["delta_fen"]
        if field not in values or not isinstance(delta, int):
            raise InvalidInput(
                "field", f"a correction names cash_fen, card_fen or counted_cash_fen, got {field!r}"
            )
        values[field] += delta
        if values[field] < 0:
            raise InvalidInput(field, f"the correction would make {field} negative ({values[field]})")
    return Tenders(tenders.wechat_fen, values["cash_fen"], values["card_fen"], values["counted_cash_fen"])
