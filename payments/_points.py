"""Points around a sale's payment: a redemption is held in the transaction that records the order, posted
and the fill-up's points earned in the transaction that records the payment, voided when the order
closes unpaid (its lock released, or an expired order retired), and reversed in the transaction where
a refund succeeds. An order paid after all once its hold was voided opens a back-office case
(`points_released`, store/_cases.py). The ledger is store/_ledger.py; the rules loyalty/ with
data/loyalty/rules.toml.

Earning is keyed by the payment (out_trade_no): a replayed notification or a retried job never earns
twice. Points are earned on the cash paid (after promotion and redemption), times the payer's membership
tier's earn multiplier (membership_tiers, the one place tiers are defined; store._membership).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import tuple_row

from config import load_loyalty_rules
from geo import ImplausibleValue
from loyalty import InvalidHoldTransition, earn_points, redemption_fen, redemption_problem
from payments import _hooks
from payments._errors import SaleNotPayable
from store import _cases, _ledger, _payments
from store import _sale_payments as sp
from store._membership import tier_of

log = logging.getLogger("payments.points")
LOCAL_TZ = ZoneInfo("Asia/Shanghai")  # a day's earning cap runs on Lijiang's calendar day
ACTOR = "points"


def check_redemption(
    conn: psycopg.Connection, *, user_id: int, points: int, due_fen: int, now: datetime
) -> int:
    """Fen off for redeeming `points` on an order of `due_fen`; ImplausibleValue (422) naming what is
    wrong: not a multiple of the unit, more than the unexpired balance, nothing left to pay."""
    rules = load_loyalty_rules().redemption
    available = _ledger.redeemable(conn, user_id, now=now) if points else 0
    problem = redemption_problem(rules, points=points, balance=available, due_fen=due_fen)
    if problem is not None:
        raise ImplausibleValue(
            "redeem_points",
            f"redeem_points {problem}",
            rule="points.redemption",
            allowed={"unit": str(rules.unit_points), "available": str(available)},
        )
    return redemption_fen(rules, points)


def hold_for_order(
    conn: psycopg.Connection, *, user_id: int, out_trade_no: str, points: int, fen_off: int, actor: str
) -> None:
    """Hold the redemption of an order in the caller's (the order's) transaction."""
    if points <= 0:
        return
    try:
        held = _ledger.hold(
            conn,
            user_id=user_id,
            ref=out_trade_no,
            points=points,
            fen_off=fen_off,
            now=datetime.now().astimezone(),
            actor=actor,
        )
    except _ledger.InsufficientPoints as exc:
        raise ImplausibleValue("redeem_points", f"redeem_points: {exc}", rule="points.redemption") from None
    if held.state != "pending" or held.points != points:  # voided before it was taken, or another amount
        raise SaleNotPayable(f"the points of order {out_trade_no} were released: pay with a new key")


def fen_off_of(conn: psycopg.Connection, out_trade_no: str) -> tuple[int, int]:
    """(points, fen off) the order redeems (0, 0 without a live or posted hold)."""
    h = _ledger.get_hold(conn, out_trade_no)
    if h is None or h.state == "voided":
        return 0, 0
    return h.points, h.fen_off


def void_order(conn: psycopg.Connection, out_trade_no: str, *, actor: str = ACTOR) -> None:
    try:
        _ledger.void(conn, out_trade_no, actor=actor)
    except InvalidHoldTransition:  # paid after all: its refund returns the points
        log.info("hold of %s was posted: not voided", out_trade_no)


RELEASED_REASON = (
    "订单关闭后积分已退回，付款仍按抵扣后的金额到账，积分未扣：需补扣积分或退还差额"
    " / paid after its points hold was released: charged the amount less the redemption, no points"
    " redeemed; take the points or refund the difference"
)


def open_released_case(conn: psycopg.Connection, out_trade_no: str, sale_id: int) -> bool:
    """An order paid after its points hold was voided (closed unpaid, then WeChat Pay's late payment): the
    payer was charged the amount less the redemption but kept the points. A `points_released` case for a
    person, in the payment's transaction, once; nothing when the order redeemed no points."""
    h = _ledger.get_hold(conn, out_trade_no)
    if h is None or h.points <= 0 or h.user_id is None:
        return False
    log.warning("order %s was paid after its hold of %d points was voided: a case", out_trade_no, h.points)
    detail = {
        "user_id": h.user_id,
        "points": h.points,
        "fen_off": h.fen_off,
        "sale_id": sale_id,
        "reason": RELEASED_REASON,
    }
    return _cases.open_case(
        conn, out_trade_no=out_trade_no, sale_id=sale_id, kind="points_released", detail=detail, actor=ACTOR
    )


def on_sale_paid(conn: psycopg.Connection, sale_id: int) -> None:
    """The sale's payment is recorded: post its redemption and earn its points (once). A redemption voided
    before the payment came opens a `points_released` case instead of posting."""
    for row in sp.payments_of_sale(conn, sale_id):
        if row["state"] != "paid":
            continue
        payment = _payments.get_payment(conn, row["out_trade_no"])
        sale = sp.get_sale(conn, sale_id)
        if payment is None or sale is None:
            continue
        try:
            _ledger.post(conn, payment.out_trade_no, actor=ACTOR)
        except InvalidHoldTransition:
            open_released_case(conn, payment.out_trade_no, sale_id)
        paid_at = payment.paid_at or datetime.now().astimezone()
        tier = tier_of(conn, int(row["user_id"]), at=paid_at)
        rules = replace(load_loyalty_rules().earn, tier_percent={tier.code: int(tier.earn_multiplier * 100)})
        day = paid_at.astimezone(LOCAL_TZ).replace(hour=0, minute=0, second=0, microsecond=0)
        today = _ledger.earned_on_day(
            conn, int(row["user_id"]), day_start=day, day_end=day + timedelta(days=1)
        )
        points = earn_points(
            rules,
            paid_fen=payment.paid_fen or payment.amount_fen,
            volume_ml=sale.volume_ml,
            brand=sale.station_brand,
            station_id=sale.station_id,
            earned_today=today,
            tier=tier.code,
        )
        _ledger.earn(
            conn,
            user_id=int(row["user_id"]),
            out_trade_no=payment.out_trade_no,
            points=points,
            earned_at=paid_at,
            expiry_months=rules.expiry_months,
            actor=ACTOR,
        )


def on_sale_unlocked(conn: psycopg.Connection, sale_id: int) -> None:
    """The sale's order closed unpaid and its lock was released: void the holds of its unpaid orders."""
    for row in sp.payments_of_sale(conn, sale_id):
        if row["state"] != "paid":
            void_order(conn, str(row["out_trade_no"]))


def on_refunded(conn: psycopg.Connection, out_trade_no: str, out_refund_no: str) -> None:
    """A refund succeeded: take back the share of earned points, give back the share of redeemed ones. A
    payment refunded in full owes nothing for points it did not redeem: its `points_released` case, if
    open, is resolved (the cashier took the sale, for one)."""
    payment = _payments.get_payment(conn, out_trade_no)
    if payment is None or not payment.paid_fen:
        return
    if payment.refunded_fen >= payment.paid_fen:
        _cases.resolve_open(
            conn,
            out_trade_no,
            "points_released",
            note=f"全额退款 {out_refund_no}，无需处理 / refunded in full ({out_refund_no}): nothing left to settle",
            actor=ACTOR,
        )
    _ledger.reverse_for_refund(
        conn,
        out_trade_no=out_trade_no,
        out_refund_no=out_refund_no,
        refunded_fen=payment.refunded_fen,
        paid_fen=payment.paid_fen,
        now=datetime.now().astimezone(),
        actor=ACTOR,
    )


def void_closed_orders(conn: psycopg.Connection, *, limit: int = 500) -> int:
    """Void the pending holds of orders that closed unpaid (a lock never released included)."""
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT h.ref FROM points_holds h JOIN payments p ON p.out_trade_no = h.ref"
            " WHERE h.state = 'pending' AND p.state = 'closed' ORDER BY h.created_at LIMIT %s",
            (limit,),
        )
        .fetchall()
    )
    for (ref,) in rows:
        void_order(conn, str(ref))
    return len(rows)


def register_points_hooks() -> None:
    """Earn and post on paid, void on unlocked, reverse on refunded: call once per process that runs
    payment code (the API, the payments worker); a second call changes nothing."""
    for hooks, hook in ((_hooks.on_paid, on_sale_paid), (_hooks.on_unlocked, on_sale_unlocked)):
        if hook not in hooks:
            hooks.append(hook)
    if on_refunded not in _hooks.on_refunded:
        _hooks.on_refunded.append(on_refunded)


def expire_points(
    connect: Callable[[], AbstractContextManager[psycopg.Connection]],
    *,
    now: datetime | None = None,
    batch: int = 1_000,
) -> dict[str, int]:
    """The expiry job (hourly in the payments worker, or `python -m payments expire-points`): void the
    holds of orders that closed unpaid, then expire due lots FIFO, a batch per transaction. Safe to run
    twice or from two workers: each lot expires once, each hold resolves once."""
    at = now or datetime.now().astimezone()
    with connect() as conn, conn.transaction():
        voided = void_closed_orders(conn)
    expired = 0
    for _ in range(10_000):  # bounded: 10 million lots per run at most
        with connect() as conn, conn.transaction():
            n = _ledger.expire_due(conn, now=at, limit=batch, actor="points-expiry")
        expired += n
        if n == 0:
            break
    return {"voided": voided, "expired": expired}
