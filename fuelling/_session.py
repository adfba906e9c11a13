"""The fuelling session's state machine: pure (no I/O), one explicit transition table.

A session binds one phone to one nozzle and follows what the station link reports for that pump until
the sale is final and paid (or the session leaves by a side exit):

    bound ──lift──▶ nozzle_up ──authorise──▶ authorised ──flow / progress──▶ fuelling
      │                 │                        │                             │ sale (payable, consistent)
      │ timeout/cancel  │ hang up: back to bound │                             ▼
      ▼                 ▼                        ▼                         completed ──lock ok──▶ locked ──paid──▶ paid
    expired, cancelled                                                         │ lock refused / cleared
                                                                               ▼
                                                   taken_by_cashier  (also: a sale cleared or locked elsewhere)
                                                   review            (amounts that do not add up)

Events are named after the station link's (forecourt/): `PumpStatus` (PUMPSTATUS with the IFSF
fuelling-point state when the site sends it), `Progress` (the PROGRESS extension), `Sale` (a finished
controller sale, TRANSACTIONS), `LockResult` (LOCKTX answers: OK, 409 locked by someone else, 410
already cleared), `Unlocked` (UNLOCKTX), `Timeout`, `Cancel` and `Paid` (reserved for payments).

`apply(session, event)` first classifies the event in the session's context (`classify`: e.g. a sale
whose volume is not its totaliser delta is a `sale_mismatch`), then looks the pair (state, kind) up in
`TRANSITIONS`. A pair that is not in the table raises `InvalidTransition` (`SessionClosed` once the
session is in a terminal state, `OutOfOrder` for a progress sequence number that does not move forward)
and the session is unchanged: `Session` is immutable and `apply` returns a new one.

Money is integer fen, volumes integer millilitres. Post-pay is the default mode: lift, fuel, then pay.
A preset (`mode="preset"`, `preset_amount_fen`) is a pre-authorised amount: the pump stops there, and a
sale above it (beyond the tolerance) goes to review, never to payment.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Literal

from geo._errors import Conflict, InvalidInput

# Amount cross-check: |amount - unit price x volume| may be at most this many fen (rounding at the
# controller: one fen either way); the sale volume must equal the totaliser delta exactly (millilitres).
AMOUNT_TOLERANCE_FEN = 1
MAX_PRESET_FEN = 500_000  # 5,000 CNY: more than any tank holds


class State(StrEnum):
    BOUND = "bound"
    NOZZLE_UP = "nozzle_up"
    AUTHORISED = "authorised"
    FUELLING = "fuelling"
    COMPLETED = "completed"
    LOCKED = "locked"
    PAID = "paid"
    # side exits
    EXPIRED = "expired"
    TAKEN_BY_CASHIER = "taken_by_cashier"
    CANCELLED = "cancelled"
    REVIEW = "review"


TERMINAL: frozenset[State] = frozenset(
    {State.PAID, State.EXPIRED, State.TAKEN_BY_CASHIER, State.CANCELLED, State.REVIEW}
)
# the only states in which the amount is final (the controller's sale, checked)
AMOUNT_FINAL: frozenset[State] = frozenset({State.COMPLETED, State.LOCKED, State.PAID})
ACTIVE: frozenset[State] = frozenset(State) - TERMINAL


class Kind(StrEnum):
    """What an event means for the session (see `classify`)."""

    HUNG_UP = "hung_up"  # nozzle on the hook, pump idle (OpenFSC free, IFSF 3 Idle)
    LIFTED = "lifted"  # nozzle up, not authorised (in-use, IFSF 4 Calling)
    AUTHORISED = "authorised"  # IFSF 5 Authorised
    FLOWING = "flowing"  # IFSF 6-9 Started / Fuelling (suspended too), OpenFSC in-transaction
    READY_TO_PAY = "ready_to_pay"  # OpenFSC ready-to-pay / locked: a sale is in the pump's buffer
    OUT_OF_ORDER = "out_of_order"  # OpenFSC out-of-order, IFSF 1 Inoperative / 2 Closed
    PROGRESS = "progress"  # live volume and amount, sequence number moving forward
    SALE_PAYABLE = "sale_payable"  # a finished sale, payable, whose amounts add up
    SALE_MISMATCH = "sale_mismatch"  # a finished sale whose amounts do not add up (review)
    SALE_TAKEN = "sale_taken"  # the sale was cleared (cashier, offline) or locked by someone else
    SALE_REPEATED = "sale_repeated"  # the same sale again, same amounts (a retransmission)
    LOCK_OK = "lock_ok"
    LOCK_REFUSED = "lock_refused"  # 409 locked by someone else, 410 already cleared
    UNLOCKED = "unlocked"
    PAID = "paid"
    TIMEOUT = "timeout"
    CANCEL = "cancel"


S, K = State, Kind
# (state, kind) -> next state. Anything not listed is refused (InvalidTransition). Terminal states have no
# entries: they stay terminal.
TRANSITIONS: dict[tuple[State, Kind], State] = {
    # bound: the phone holds the nozzle; nothing has happened at the pump yet
    (S.BOUND, K.HUNG_UP): S.BOUND,
    (S.BOUND, K.LIFTED): S.NOZZLE_UP,
    (S.BOUND, K.AUTHORISED): S.AUTHORISED,
    (S.BOUND, K.FLOWING): S.FUELLING,
    (S.BOUND, K.PROGRESS): S.FUELLING,
    (S.BOUND, K.OUT_OF_ORDER): S.BOUND,
    (S.BOUND, K.TIMEOUT): S.EXPIRED,  # no lift within the binding's time
    (S.BOUND, K.CANCEL): S.CANCELLED,
    # A sale reported while bound is refused: the session never saw this pump's nozzle lifted, so it may
    # be the previous customer's unpaid sale (one payment per controller sale, never someone else's).
    # nozzle_up
    (S.NOZZLE_UP, K.HUNG_UP): S.BOUND,  # put back without fuelling: may lift again
    (S.NOZZLE_UP, K.LIFTED): S.NOZZLE_UP,
    (S.NOZZLE_UP, K.AUTHORISED): S.AUTHORISED,
    (S.NOZZLE_UP, K.FLOWING): S.FUELLING,
    (S.NOZZLE_UP, K.PROGRESS): S.FUELLING,
    (S.NOZZLE_UP, K.OUT_OF_ORDER): S.NOZZLE_UP,
    (S.NOZZLE_UP, K.SALE_PAYABLE): S.COMPLETED,  # a sale so short that no progress came first
    (S.NOZZLE_UP, K.SALE_MISMATCH): S.REVIEW,
    (S.NOZZLE_UP, K.SALE_TAKEN): S.TAKEN_BY_CASHIER,
    (S.NOZZLE_UP, K.TIMEOUT): S.EXPIRED,
    (S.NOZZLE_UP, K.CANCEL): S.CANCELLED,
    # authorised: the pump may deliver (post-pay: the site authorised it; preset: our amount)
    (S.AUTHORISED, K.HUNG_UP): S.BOUND,  # authorisation lapsed at the pump
    (S.AUTHORISED, K.LIFTED): S.AUTHORISED,
    (S.AUTHORISED, K.AUTHORISED): S.AUTHORISED,
    (S.AUTHORISED, K.FLOWING): S.FUELLING,
    (S.AUTHORISED, K.PROGRESS): S.FUELLING,
    (S.AUTHORISED, K.OUT_OF_ORDER): S.AUTHORISED,
    (S.AUTHORISED, K.SALE_PAYABLE): S.COMPLETED,
    (S.AUTHORISED, K.SALE_MISMATCH): S.REVIEW,
    (S.AUTHORISED, K.SALE_TAKEN): S.TAKEN_BY_CASHIER,
    (S.AUTHORISED, K.TIMEOUT): S.EXPIRED,
    (S.AUTHORISED, K.CANCEL): S.CANCELLED,
    # fuelling: fuel is flowing; it cannot be cancelled nor time out, it ends with the sale
    (S.FUELLING, K.HUNG_UP): S.FUELLING,  # the sale follows
    (S.FUELLING, K.LIFTED): S.FUELLING,
    (S.FUELLING, K.AUTHORISED): S.FUELLING,
    (S.FUELLING, K.FLOWING): S.FUELLING,
    (S.FUELLING, K.READY_TO_PAY): S.FUELLING,  # the sale itself carries the amounts
    (S.FUELLING, K.OUT_OF_ORDER): S.FUELLING,
    (S.FUELLING, K.PROGRESS): S.FUELLING,
    (S.FUELLING, K.SALE_PAYABLE): S.COMPLETED,
    (S.FUELLING, K.SALE_MISMATCH): S.REVIEW,
    (S.FUELLING, K.SALE_TAKEN): S.TAKEN_BY_CASHIER,
    # completed: the sale is payable and its amount final; lock it before the payment order
    (S.COMPLETED, K.HUNG_UP): S.COMPLETED,
    (S.COMPLETED, K.READY_TO_PAY): S.COMPLETED,
    (S.COMPLETED, K.OUT_OF_ORDER): S.COMPLETED,
    (S.COMPLETED, K.SALE_REPEATED): S.COMPLETED,
    (S.COMPLETED, K.SALE_TAKEN): S.TAKEN_BY_CASHIER,  # the cashier cleared it first
    (S.COMPLETED, K.SALE_MISMATCH): S.REVIEW,  # the same sale reported again with other amounts
    (S.COMPLETED, K.LOCK_OK): S.LOCKED,
    (S.COMPLETED, K.LOCK_REFUSED): S.TAKEN_BY_CASHIER,
    (S.COMPLETED, K.CANCEL): S.CANCELLED,  # the driver pays at the cashier instead: the sale stays payable
    # locked: the sale is ours to pay; the payment (or an unlock) ends it
    (S.LOCKED, K.HUNG_UP): S.LOCKED,
    (S.LOCKED, K.READY_TO_PAY): S.LOCKED,
    (S.LOCKED, K.OUT_OF_ORDER): S.LOCKED,
    (S.LOCKED, K.SALE_REPEATED): S.LOCKED,
    (S.LOCKED, K.SALE_MISMATCH): S.REVIEW,
    (S.LOCKED, K.LOCK_OK): S.LOCKED,  # a retried LOCKTX answered OK again
    (S.LOCKED, K.UNLOCKED): S.COMPLETED,  # payment abandoned: the sale is payable again
    (S.LOCKED, K.PAID): S.PAID,
}


# ---- events ------------------------------------------------------------------------------------------

PumpStatusText = Literal["free", "in-use", "in-transaction", "ready-to-pay", "locked", "out-of-order"]
PUMP_STATUSES: tuple[str, ...] = (
    "free",
    "in-use",
    "in-transaction",
    "ready-to-pay",
    "locked",
    "out-of-order",
)
SaleState = Literal["payable", "locked", "cleared"]


@dataclass(frozen=True)
class PumpStatus:
    """PUMPSTATUS for the session's pump; `fp_state` is the IFSF fuelling-point state (1-9) when known."""

    status: PumpStatusText
    fp_state: int | None = None


@dataclass(frozen=True)
class Progress:
    """PROGRESS: the running sale's volume and amount; `seq` counts up per sale."""

    seq: int
    volume_ml: int
    amount_fen: int


@dataclass(frozen=True)
class Sale:
    """A finished controller sale on the session's nozzle (fcc_sales)."""

    site_tx_id: str
    volume_ml: int
    amount_fen: int
    unit_price_fen: int
    totaliser_start_ml: int
    totaliser_end_ml: int
    state: SaleState = "payable"
    offline: bool = False
    # the station link's own verdict on the sale (forecourt._sales.review_reason: no totalisers, figures
    # reported twice with other values, ...): a sale it refused is never payable
    review_reason: str | None = None


@dataclass(frozen=True)
class LockResult:
    """The answer to LOCKTX: ok, 409 (locked by someone else) or 410 (already cleared)."""

    site_tx_id: str
    outcome: Literal["ok", "locked_elsewhere", "cleared"]


@dataclass(frozen=True)
class Unlocked:
    """UNLOCKTX answered OK: the sale is payable again."""

    site_tx_id: str


@dataclass(frozen=True)
class Paid:
    """The payment for the locked sale succeeded (reserved for payments)."""

    site_tx_id: str


@dataclass(frozen=True)
class Timeout:
    """Nothing happened at the pump within the binding's time."""


@dataclass(frozen=True)
class Cancel:
    """The driver gave the nozzle up."""


Event = PumpStatus | Progress | Sale | LockResult | Unlocked | Paid | Timeout | Cancel


# ---- the session ---------------------------------------------------------------------------------------


class InvalidTransition(Conflict):
    """The event is not allowed in the session's state; the session is unchanged."""

    def __init__(self, state: State, kind: Kind | None, message: str | None = None) -> None:
        what = f"a {kind.value} event" if kind is not None else "this event"
        super().__init__(message or f"{what} is not allowed in state {state.value}")
        self.state = state
        self.kind = kind


class SessionClosed(InvalidTransition):
    """The session is in a terminal state: it takes no more events."""


class OutOfOrder(InvalidTransition):
    """A progress event whose sequence number or totals go backwards."""


@dataclass(frozen=True)
class SaleInfo:
    """The controller sale the session ended with (kept in review and exits too, for the back office)."""

    site_tx_id: str
    volume_ml: int
    amount_fen: int
    unit_price_fen: int
    totaliser_start_ml: int
    totaliser_end_ml: int


@dataclass(frozen=True)
class Session:
    state: State = State.BOUND
    mode: Literal["postpay", "preset"] = "postpay"
    preset_amount_fen: int | None = None
    last_seq: int = 0  # the last progress sequence number accepted (0: none yet)
    volume_ml: int = 0  # live volume: the last progress, then the sale's
    amount_fen: int = 0  # live amount: the last progress, then the sale's
    sale: SaleInfo | None = None
    review_reason: str | None = None
    version: int = 0  # counts the events applied: a client resumes after the version it has seen

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def amount_final(self) -> bool:
        return self.state in AMOUNT_FINAL

    @property
    def final_amount_fen(self) -> int | None:
        """The amount to pay: the checked controller sale's, only in completed, locked and paid."""
        return self.sale.amount_fen if self.amount_final and self.sale is not None else None


def new_session(*, preset_amount_fen: int | None = None) -> Session:
    """A session just bound to its nozzle: post-pay, or preset with a pre-authorised amount in fen."""
    if preset_amount_fen is None:
        return Session()
    if isinstance(preset_amount_fen, bool) or not isinstance(preset_amount_fen, int):
        raise InvalidInput("preset_amount_fen", "must be an integer number of fen")
    if not 100 <= preset_amount_fen <= MAX_PRESET_FEN:
        raise InvalidInput("preset_amount_fen", f"must be between 100 and {MAX_PRESET_FEN} fen")
    return Session(mode="preset", preset_amount_fen=preset_amount_fen)


@dataclass(frozen=True)
class Transition:
    """What `apply` did: the state before, the event's kind, the new session, and what the caller must do
    next (`effects`: "lock_sale" on entering completed, "flag_review" on entering review)."""

    before: State
    kind: Kind
    session: Session
    effects: tuple[str, ...] = ()

    @property
    def after(self) -> State:
        return self.session.state

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _status_kind(event: PumpStatus) -> Kind:
    fp = event.fp_state
    if fp is not None:
        if not 1 <= fp <= 9:
            raise InvalidInput("fp_state", f"must be an IFSF fuelling-point state 1-9, got {fp}")
        if fp in (1, 2):
            return Kind.OUT_OF_ORDER
        if fp == 3:
            # idle with a sale waiting in the buffer is reported as ready-to-pay / locked
            return Kind.READY_TO_PAY if event.status in ("ready-to-pay", "locked") else Kind.HUNG_UP
        return {4: Kind.LIFTED, 5: Kind.AUTHORISED}.get(fp, Kind.FLOWING)
    return {
        "free": Kind.HUNG_UP,
        "in-use": Kind.LIFTED,
        "in-transaction": Kind.FLOWING,
        "ready-to-pay": Kind.READY_TO_PAY,
        "locked": Kind.READY_TO_PAY,
        "out-of-order": Kind.OUT_OF_ORDER,
    }[event.status]


def sale_problem(session: Session, sale: Sale, *, tolerance_fen: int = AMOUNT_TOLERANCE_FEN) -> str | None:
    """Why a finished sale's amounts do not add up, or None. Volume = end totaliser - start totaliser,
    exactly; amount = unit price x volume within `tolerance_fen`; never less than the fuel already shown
    live; within the preset amount."""
    delta = sale.totaliser_end_ml - sale.totaliser_start_ml
    if sale.volume_ml <= 0:
        return f"the sale has no volume ({sale.volume_ml} ml): the totaliser did not move"
    if delta != sale.volume_ml:
        return (
            f"volume {sale.volume_ml} ml is not the totaliser delta {delta} ml "
            f"({sale.totaliser_end_ml} - {sale.totaliser_start_ml})"
        )
    expected = (sale.unit_price_fen * sale.volume_ml + 500) // 1000
    if abs(sale.amount_fen - expected) > tolerance_fen:
        return (
            f"amount {sale.amount_fen} fen is not unit price x volume = {sale.unit_price_fen} x "
            f"{sale.volume_ml / 1000:.3f} L = {expected} fen (tolerance {tolerance_fen} fen)"
        )
    if sale.volume_ml < session.volume_ml or sale.amount_fen < session.amount_fen:
        return (
            f"the sale ({sale.volume_ml} ml, {sale.amount_fen} fen) is less than what was shown live "
            f"({session.volume_ml} ml, {session.amount_fen} fen)"
        )
    if session.preset_amount_fen is not None and sale.amount_fen > session.preset_amount_fen + tolerance_fen:
        return f"amount {sale.amount_fen} fen is above the preset {session.preset_amount_fen} fen"
    return None


def classify(session: Session, event: Event, *, tolerance_fen: int = AMOUNT_TOLERANCE_FEN) -> Kind:
    """What `event` means for `session` (pure). Raises InvalidInput for an event that is malformed in itself
    and OutOfOrder for progress that goes backwards."""
    if isinstance(event, PumpStatus):
        if event.status not in PUMP_STATUSES:
            raise InvalidInput("status", f"must be one of {', '.join(PUMP_STATUSES)}, got {event.status!r}")
        return _status_kind(event)
    if isinstance(event, Progress):
        if event.seq < 1 or event.volume_ml < 0 or event.amount_fen < 0:
            raise InvalidInput("progress", "seq must be 1 or more, volume and amount 0 or more")
        if event.seq <= session.last_seq:
            raise OutOfOrder(
                session.state,
                Kind.PROGRESS,
                f"progress seq {event.seq} does not follow the last one, {session.last_seq}",
            )
        if event.volume_ml < session.volume_ml or event.amount_fen < session.amount_fen:
            raise OutOfOrder(
                session.state,
                Kind.PROGRESS,
                f"progress totals go backwards ({event.volume_ml} ml, {event.amount_fen} fen after "
                f"{session.volume_ml} ml, {session.amount_fen} fen)",
            )
        return Kind.PROGRESS
    if isinstance(event, Sale):
        if session.sale is not None:
            same = session.sale == _sale_info(event)
            if same and event.state == "payable":
                return Kind.SALE_REPEATED
            if session.sale.site_tx_id != event.site_tx_id:
                raise InvalidTransition(
                    session.state,
                    None,
                    f"the session has sale {session.sale.site_tx_id}, not {event.site_tx_id}",
                )
            if not same:
                return Kind.SALE_MISMATCH  # the same sale with other amounts: never pay either
        if event.state != "payable" or event.offline:
            return Kind.SALE_TAKEN
        if event.review_reason:
            return Kind.SALE_MISMATCH
        return (
            Kind.SALE_MISMATCH
            if sale_problem(session, event, tolerance_fen=tolerance_fen)
            else Kind.SALE_PAYABLE
        )
    if isinstance(event, LockResult | Unlocked | Paid):
        if session.sale is None or session.sale.site_tx_id != event.site_tx_id:
            have = session.sale.site_tx_id if session.sale else "none"
            raise InvalidTransition(
                session.state, None, f"{type(event).__name__} for sale {event.site_tx_id}, session has {have}"
            )
        if isinstance(event, LockResult):
            return Kind.LOCK_OK if event.outcome == "ok" else Kind.LOCK_REFUSED
        return Kind.UNLOCKED if isinstance(event, Unlocked) else Kind.PAID
    if isinstance(event, Timeout):
        return Kind.TIMEOUT
    if isinstance(event, Cancel):
        return Kind.CANCEL
    raise InvalidInput("event", f"unknown event {type(event).__name__}")


def _sale_info(sale: Sale) -> SaleInfo:
    return SaleInfo(
        site_tx_id=sale.site_tx_id,
        volume_ml=sale.volume_ml,
        amount_fen=sale.amount_fen,
        unit_price_fen=sale.unit_price_fen,
        totaliser_start_ml=sale.totaliser_start_ml,
        totaliser_end_ml=sale.totaliser_end_ml,
    )


def apply(session: Session, event: Event, *, tolerance_fen: int = AMOUNT_TOLERANCE_FEN) -> Transition:
    """The session after `event`, or InvalidTransition (the session is unchanged: it is immutable)."""
    if session.terminal:
        raise SessionClosed(
            session.state, None, f"the session is {session.state.value}: it takes no more events"
        )
    kind = classify(session, event, tolerance_fen=tolerance_fen)
    target = TRANSITIONS.get((session.state, kind))
    if target is None:
        raise InvalidTransition(session.state, kind)
    changes: dict[str, Any] = {"state": target, "version": session.version + 1}
    effects: tuple[str, ...] = ()
    if isinstance(event, Progress):
        changes.update(last_seq=event.seq, volume_ml=event.volume_ml, amount_fen=event.amount_fen)
    elif isinstance(event, Sale) and kind != Kind.SALE_REPEATED:
        info = _sale_info(event)
        changes.update(sale=info, volume_ml=info.volume_ml, amount_fen=info.amount_fen)
        if target == State.REVIEW:
            changes["review_reason"] = (
                event.review_reason or sale_problem(session, event, tolerance_fen=tolerance_fen)
                if session.sale is None
                else f"sale {event.site_tx_id} was reported again with other amounts"
            )
    if target == State.COMPLETED and session.state != State.COMPLETED and kind != Kind.UNLOCKED:
        effects = ("lock_sale",)
    elif target == State.REVIEW:
        effects = ("flag_review",)
    return Transition(before=session.state, kind=kind, session=replace(session, **changes), effects=effects)
