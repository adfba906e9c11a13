"""Paying a controller sale: LOCKTX at the site, then the JSAPI order, behind the client's Idempotency-Key.

No fuel, no pay: a payment references exactly one controller sale (fcc_sales) whose volume equals its
nozzle's totaliser delta, with no review reason, that is payable or locked by this very payer; the amount
is the sale's amount minus the promotion that applied at the fill-up (geo._pricing at the sale's end, the
payment method being WeChat Pay), in integer fen.

The request runs in steps with recovery points stored on its idempotency key (Stripe's design,
brandur/rocket-rides-atomic): `started` -> (LOCKTX OK; payment and sale link stored) `sale_locked` ->
(JSAPI order created, prepay_id stored) `order_created` -> (answer stored) `finished`. Every step is
safe to repeat: LOCKTX with our FSCTransactionID is idempotent at the site, the payment row is keyed by an
out_trade_no derived from the sale and the attempt, and the order is created from the stored values (the
gateway answers the same prepay_id). A retry with the same key resumes where the last one stopped (a
killed API included); a retry after the answer gets the stored answer; a double tap with another key
finds the payer's live payment of the sale and the same order.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg

from forecourt import send_command
from geo import ImplausibleValue, InvalidInput, NotFound
from geo._pricing import NO_HOLIDAYS, HolidayCalendar, Promotion, effective_price
from payments import _hooks, _points
from payments._errors import (
    GatewayError,
    IdempotencyKeyInUse,
    SaleLockedElsewhere,
    SaleNotPayable,
    SaleTaken,
)
from payments._flow import apply_order_status
from payments._wechatpay import WeChatPayClient, order_expiry, out_trade_no_for
from store import _payments
from store import _sale_payments as sp
from store._membership import membership
from store._promotions import promotions_for_stations
from store._users import User

log = logging.getLogger("payments.sale")

# Our OpenFSC FSCTransactionIDs are UUIDs derived from the sale and the payer: the same payer's retries
# hold the same lock, another payer's LOCKTX gets 409 at the site.
FSC_NAMESPACE = uuid.UUID("5b0c3f7e-1d6a-4f4e-9a55-6c0f3e2b8d41")
PAYMENT_METHOD = "wechat"
GRADE_GOODS = {"89": "89号汽油", "92": "92号汽油", "95": "95号汽油", "98": "98号汽油", "0": "0号柴油"}


def fsc_tx_id_for(sale_id: int, user_id: int) -> str:
    return str(uuid.uuid5(FSC_NAMESPACE, f"sale:{sale_id}:user:{user_id}"))


@dataclass(frozen=True)
class Due:
    amount_fen: int  # what the payer pays
    discount_fen: int  # the promotion's saving on this sale
    promotion_id: int | None


def amount_due(
    sale: sp.Sale,
    promotions: Sequence[Promotion],
    *,
    tz: tzinfo,
    holidays: HolidayCalendar = NO_HOLIDAYS,
    tiers: Collection[str] = (),
) -> Due:
    """The sale's amount minus the best promotion that applied when the fill-up ended (pure); `tiers`
    are the payer's membership tiers (store._membership: member-only promotions, as in the ranking)."""
    at = sale.ended_at or sale.first_seen_at
    litres = Decimal(sale.volume_ml) / 1000
    _, applied = effective_price(
        Decimal(sale.unit_price_fen) / 100,
        sale.grade,
        promotions,
        at,
        tz=tz,
        holidays=holidays,
        litres=litres,
        amount=Decimal(sale.amount_fen) / 100,
        payment=PAYMENT_METHOD,
        tiers=tiers,
    )
    if not applied:
        return Due(sale.amount_fen, 0, None)
    saving = int((applied[0].saving_total * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    discount = max(0, min(saving, sale.amount_fen - 1))
    return Due(sale.amount_fen - discount, discount, applied[0].promotion.id)


def fitness_problem(sale: sp.Sale, fsc_tx_id: str) -> str | None:
    """Why the sale cannot be paid by the holder of fsc_tx_id (None: it can). 'taken' when the site
    settled it another way."""
    if sale.review_reason is not None:
        return f"the sale is under review: {sale.review_reason}"
    if sale.volume_ml <= 0 or sale.amount_fen <= 0:
        return "the sale has no volume or no amount"
    if sale.totaliser_start_ml is None or sale.totaliser_end_ml is None:
        return "no fuel, no pay: the sale has no totaliser readings"
    if sale.totaliser_end_ml - sale.totaliser_start_ml != sale.volume_ml:
        return "no fuel, no pay: the sale's volume differs from its nozzle's totaliser delta"
    if sale.state == "cleared":
        return "taken"
    if sale.state == "locked" and sale.locked_by not in (None, fsc_tx_id):
        return "locked"
    return None


@dataclass(frozen=True)
class PayParams:
    """The answer of a pay request: the order and the mini-program's wx.requestPayment parameters."""

    out_trade_no: str
    sale_id: int
    amount_fen: int
    sale_amount_fen: int
    discount_fen: int
    expires_at: str
    time_stamp: str
    nonce_str: str
    package: str
    sign_type: str
    pay_sign: str
    redeemed_points: int = 0
    redemption_fen: int = 0

    def request_payment(self) -> dict[str, str]:
        return {
            "timeStamp": self.time_stamp,
            "nonceStr": self.nonce_str,
            "package": self.package,
            "signType": self.sign_type,
            "paySign": self.pay_sign,
        }


_REPLAYED: dict[str, type[Exception]] = {
    cls.__name__: cls for cls in (SaleNotPayable, SaleLockedElsewhere, SaleTaken, NotFound)
}
_STATUS = {
    "SaleNotPayable": 409,
    "SaleLockedElsewhere": 409,
    "SaleTaken": 410,
    "NotFound": 404,
    "ImplausibleValue": 422,
}


def _replay(key: sp.IdempotencyKey) -> PayParams:
    body = key.response_body or {}
    if key.response_code == 200:
        return PayParams(**body)
    err = body.get("error", {})
    if err.get("code") == "ImplausibleValue":
        message = str(err.get("message", ""))
        if message.startswith("redeem_points"):
            raise ImplausibleValue("redeem_points", message, rule="points.redemption")
        raise ImplausibleValue("sale_id", message, rule="payment.amount")
    raise _REPLAYED.get(str(err.get("code")), SaleNotPayable)(str(err.get("message", "")))


def pay_for_sale(
    db: Any,
    *,
    sale_id: int,
    user: User,
    idempotency_key: str,
    client: WeChatPayClient,
    tz: tzinfo,
    holidays: HolidayCalendar = NO_HOLIDAYS,
    client_ip: str = "127.0.0.1",
    max_fen: int = 500_000,
    site_timeout_s: float = 10.0,
    key_lock_s: float = 30.0,
    redeem_points: int = 0,
    screen: Callable[[sp.Sale], None] | None = None,
) -> PayParams:
    """Lock the sale at its site and create (or find again) its WeChat Pay order; the wx.requestPayment
    parameters. `db` is a store.Database. Raises NotFound (no such sale), SaleNotPayable (409),
    SaleLockedElsewhere (409), SaleTaken (410), IdempotencyKeyInUse (409), InvalidInput (the key was used
    for another request), forecourt.StationOffline / CommandTimeout and GatewayError (try again).
    `redeem_points` (a multiple of the redemption unit) come off the amount: held with the order, posted
    when it is paid, voided when it closes unpaid; ImplausibleValue (422) when they cannot be redeemed.
    `screen(sale)` (risk control) runs before anything moves (before LOCKTX and the order); whatever it
    raises refuses the request and releases the key, so a retry after a review's approval is screened
    again."""
    if not idempotency_key or len(idempotency_key) > 100:
        raise InvalidInput("Idempotency-Key", "must have 1 to 100 characters")
    params: dict[str, int] = {"sale_id": sale_id}
    if redeem_points:
        params["redeem_points"] = redeem_points
    with db.transaction() as conn:
        key, mine = sp.claim_key(
            conn,
            user_id=user.id,
            key=idempotency_key,
            method="POST",
            path=f"/v1/sales/{sale_id}/pay",
            params=params,
            lock_timeout_s=key_lock_s,
        )
    if key.request_params != params:
        raise InvalidInput("Idempotency-Key", "was used for another request: use a new key for this one")
    if key.recovery_point == "finished":
        return _replay(key)
    if not mine:
        raise IdempotencyKeyInUse("a request with this Idempotency-Key is in progress: retry shortly")
    run = _Run(
        db,
        key,
        sale_id,
        user,
        client,
        tz,
        holidays,
        client_ip,
        max_fen,
        site_timeout_s,
        redeem_points,
        screen,
    )
    try:
        return run.resume()
    except (SaleNotPayable, SaleTaken, NotFound, ImplausibleValue) as exc:
        code = type(exc).__name__ if type(exc).__name__ in _STATUS else "SaleNotPayable"
        message = exc.message if isinstance(exc, InvalidInput) else str(exc)
        with db.transaction() as conn:
            sp.finish_key(conn, key.id, _STATUS[code], {"error": {"code": code, "message": message}})
        raise
    except BaseException:
        with db.transaction() as conn:
            sp.release_key(conn, key.id)
        raise


class _Run:
    def __init__(
        self,
        db: Any,
        key: sp.IdempotencyKey,
        sale_id: int,
        user: User,
        client: WeChatPayClient,
        tz: tzinfo,
        holidays: HolidayCalendar,
        client_ip: str,
        max_fen: int,
        site_timeout_s: float,
        redeem_points: int = 0,
        screen: Callable[[sp.Sale], None] | None = None,
    ) -> None:
        self.db, self.key, self.sale_id, self.user, self.client = db, key, sale_id, user, client
        self.tz, self.holidays, self.client_ip = tz, holidays, client_ip
        self.max_fen, self.site_timeout_s = max_fen, site_timeout_s
        self.screen = screen
        self.actor = f"user:{user.id}"
        self.fsc = fsc_tx_id_for(sale_id, user.id)
        self.out_trade_no = key.out_trade_no
        self.redeem_points = redeem_points

    def resume(self) -> PayParams:
        point = self.key.recovery_point
        if point == "started":
            self.lock_sale()
            point = "sale_locked"
        if point == "sale_locked":
            self.create_order()
        return self.finish()

    # ---- started -> sale_locked -----------------------------------------------------------------------

    def lock_sale(self) -> None:
        with self.db.connection() as conn:
            sale = sp.get_sale(conn, self.sale_id)
            if sale is None:
                raise NotFound(f"sale {self.sale_id} not found")
            attempt, live = self._attempt(conn)  # paid or being paid by another: 409 first
            promos = promotions_for_stations(
                conn, [(sale.station_id, sale.station_brand)], at=sale.ended_at or sale.first_seen_at
            ).get(sale.station_id, [])
            tiers = membership(conn, self.user.id).tiers_held
        self._check(sale)  # the sale's own state first: 409 under review or held, 410 taken
        if self.screen is not None:  # then risk control, logged, before any money or lock moves
            self.screen(sale)
        if live is not None and live.expires_at <= datetime.now().astimezone():
            self._retire(live)
            attempt += 1
            live = None
        due = amount_due(sale, promos, tz=self.tz, holidays=self.holidays, tiers=tiers)
        fen_off = 0
        if live is None and self.redeem_points:  # checked before the site is asked to lock the sale
            with self.db.connection() as conn:
                fen_off = _points.check_redemption(
                    conn,
                    user_id=self.user.id,
                    points=self.redeem_points,
                    due_fen=due.amount_fen,
                    now=datetime.now().astimezone(),
                )
        if not 0 < due.amount_fen <= self.max_fen:
            raise ImplausibleValue(
                "sale_id",
                f"a payment must be between 1 and {self.max_fen} fen, this sale asks {due.amount_fen}",
                rule="payment.amount",
                allowed={"min": "1", "max": str(self.max_fen)},
            )
        reply = send_command(
            self.db,
            sale.station_id,
            "LOCKTX",
            [str(sale.pump_no), sale.site_tx_id, self.fsc],
            timeout_s=self.site_timeout_s,
            requested_by=f"payments:{self.actor}",
        )
        if not reply.ok:
            if reply.code == 409:
                raise SaleLockedElsewhere(f"sale {self.sale_id} is locked by another payment at the site")
            if reply.code == 410:
                raise SaleTaken(f"sale {self.sale_id} was already settled at the station")
            raise SaleNotPayable(f"the site refused to lock sale {self.sale_id}: {reply.code} {reply.text}")
        out_trade_no = (
            live.out_trade_no if live is not None else out_trade_no_for(sp.sale_ref(self.sale_id), attempt)
        )
        with self.db.transaction() as conn:
            try:
                payment = _payments.create_payment(
                    conn,
                    out_trade_no=out_trade_no,
                    sale_ref=sp.sale_ref(self.sale_id),
                    station_id=sale.station_id,
                    openid=self.user.openid,
                    amount_fen=due.amount_fen - fen_off,  # no fuel, no pay: sale - promotion - points
                    expires_at=order_expiry(datetime.now().astimezone(), self.client.config.order_ttl_s),
                    actor=self.actor,
                )
            except psycopg.errors.UniqueViolation:
                raise SaleLockedElsewhere(f"sale {self.sale_id} is being paid by someone else") from None
            if payment.state == "paid":
                raise SaleNotPayable(f"sale {self.sale_id} is paid")
            if payment.state != "created" or payment.openid != self.user.openid:
                raise SaleLockedElsewhere(f"sale {self.sale_id} is being paid by someone else")
            if fen_off:
                _points.hold_for_order(
                    conn,
                    user_id=self.user.id,
                    out_trade_no=payment.out_trade_no,
                    points=self.redeem_points,
                    fen_off=fen_off,
                    actor=self.actor,
                )
            _, held_fen = _points.fen_off_of(conn, payment.out_trade_no)
            sp.link_sale(
                conn,
                out_trade_no=payment.out_trade_no,
                sale_id=self.sale_id,
                user_id=self.user.id,
                fsc_tx_id=self.fsc,
                sale_amount_fen=sale.amount_fen,
                discount_fen=sale.amount_fen - payment.amount_fen - held_fen,
                promotion_id=due.promotion_id,
                actor=self.actor,
            )
            sp.set_locked_by(conn, self.sale_id, self.fsc)
            _hooks.run(_hooks.on_locked, conn, self.sale_id)
            sp.advance_key(conn, self.key.id, "sale_locked", out_trade_no=payment.out_trade_no)
        self.out_trade_no = payment.out_trade_no

    def _check(self, sale: sp.Sale) -> None:
        problem = fitness_problem(sale, self.fsc)
        if problem == "taken":
            raise SaleTaken(f"sale {self.sale_id} was already settled ({sale.cleared_by or 'elsewhere'})")
        if problem == "locked":
            raise SaleLockedElsewhere(f"sale {self.sale_id} is locked by another payment")
        if problem is not None:
            raise SaleNotPayable(f"sale {self.sale_id} cannot be paid: {problem}")

    def _attempt(self, conn: psycopg.Connection) -> tuple[int, _payments.Payment | None]:
        """(the next attempt number, the payer's live payment of the sale or None)."""
        rows = sp.payments_of_sale(conn, self.sale_id)
        live = None
        for r in rows:
            if r["state"] == "paid":
                raise SaleNotPayable(f"sale {self.sale_id} is paid")
            if r["state"] == "created":
                if r["user_id"] != self.user.id:
                    raise SaleLockedElsewhere(f"sale {self.sale_id} is being paid by someone else")
                live = _payments.get_payment(conn, r["out_trade_no"])
        return len(rows), live

    def _retire(self, payment: _payments.Payment) -> None:
        """The payer's earlier order expired: close it at WeChat Pay (unless it was paid after all) so
        the next attempt is the only live one. The sale stays locked by the same payer."""
        try:
            status = self.client.query_order(payment.out_trade_no)
        except GatewayError as exc:
            if exc.code != "ORDER_NOT_EXIST":
                raise
            status = None
        if status is not None and status.trade_state in ("SUCCESS", "REFUND"):
            with self.db.transaction() as conn:
                apply_order_status(conn, status, actor=self.actor)
            raise SaleNotPayable(f"sale {self.sale_id} is paid")
        if status is not None:
            self.client.close_order(payment.out_trade_no)
        with self.db.transaction() as conn:
            current = _payments.get_payment(conn, payment.out_trade_no, for_update=True)
            if current is not None and current.state == "created":
                _payments.mark_state(conn, current, "closed", actor=self.actor)
                _points.void_order(conn, current.out_trade_no, actor=self.actor)

    # ---- sale_locked -> order_created -----------------------------------------------------------------

    def create_order(self) -> None:
        assert self.out_trade_no is not None
        with self.db.connection() as conn:
            payment = _payments.get_payment(conn, self.out_trade_no)
            sale = sp.get_sale(conn, self.sale_id)
        assert payment is not None and sale is not None
        if payment.state == "paid":
            raise SaleNotPayable(f"sale {self.sale_id} is paid")
        if payment.state != "created":
            raise SaleNotPayable(f"the order {payment.out_trade_no} is {payment.state}: pay with a new key")
        if payment.expires_at <= datetime.now().astimezone():
            raise SaleNotPayable(f"the order {payment.out_trade_no} expired: pay with a new key")
        litres = Decimal(sale.volume_ml) / 1000
        order = self.client.create_jsapi_order(
            out_trade_no=payment.out_trade_no,
            amount_fen=payment.amount_fen,
            openid=payment.openid,
            expires_at=payment.expires_at,
            station_id=sale.station_id,
            station_name=sale.station_name,
            goods=f"{GRADE_GOODS.get(sale.grade, sale.grade)} {litres:.2f}L",
            client_ip=self.client_ip,
        )
        with self.db.transaction() as conn:
            _payments.set_prepay_id(conn, payment.out_trade_no, order.prepay_id)
            sp.advance_key(conn, self.key.id, "order_created")

    # ---- order_created -> finished --------------------------------------------------------------------

    def finish(self) -> PayParams:
        assert self.out_trade_no is not None
        with self.db.connection() as conn:
            payment = _payments.get_payment(conn, self.out_trade_no)
            link = sp.get_sale_payment(conn, self.out_trade_no)
            points, points_fen = _points.fen_off_of(conn, self.out_trade_no)
        assert payment is not None and payment.prepay_id is not None and link is not None
        wx = self.client.request_payment_params(payment.prepay_id)
        result = PayParams(
            out_trade_no=payment.out_trade_no,
            sale_id=self.sale_id,
            amount_fen=payment.amount_fen,
            sale_amount_fen=link.sale_amount_fen,
            discount_fen=link.discount_fen,
            expires_at=payment.expires_at.astimezone(self.tz).isoformat(),
            time_stamp=wx["timeStamp"],
            nonce_str=wx["nonceStr"],
            package=wx["package"],
            sign_type=wx["signType"],
            pay_sign=wx["paySign"],
            redeemed_points=points,
            redemption_fen=points_fen,
        )
        with self.db.transaction() as conn:
            sp.finish_key(conn, self.key.id, 200, asdict(result))
        return result
