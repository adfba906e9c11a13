"""What a payment event does to our records, in the caller's transaction: one place for the notify
endpoint and the workers, so a notification and a query that report the same payment agree.

Every change commits with its follow-up jobs (deferred on the same connection: the outbox).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import psycopg

from geo import Conflict, ImplausibleValue
from payments import _hooks, _queue
from payments._errors import AmountMismatch, UnknownOrder
from payments._wechatpay import Notification, OrderStatus, WeChatPayClient, order_expiry, out_trade_no_for
from store import _cases, _payments, _sale_payments

log = logging.getLogger("payments")


def apply_order_status(conn: psycopg.Connection, status: OrderStatus, *, actor: str) -> str:
    """Record what WeChat Pay says of an order. Returns 'paid' (newly), 'already' (paid before, or a state
    that changes nothing) or the state it left unchanged. Raises UnknownOrder and AmountMismatch (the
    caller's transaction then records nothing)."""
    payment = _payments.get_payment(conn, status.out_trade_no, for_update=True)
    if payment is None:
        raise UnknownOrder(f"out_trade_no {status.out_trade_no!r} is not one of our orders")
    if status.trade_state not in ("SUCCESS", "REFUND"):
        return status.trade_state
    if status.amount_fen != payment.amount_fen or (status.openid and status.openid != payment.openid):
        raise AmountMismatch(
            f"order {payment.out_trade_no}: WeChat Pay reports {status.amount_fen} fen from {status.openid!r},"
            f" the order was {payment.amount_fen} fen from {payment.openid!r}"
        )
    if not status.transaction_id:
        raise AmountMismatch(f"order {payment.out_trade_no}: a paid order without transaction_id")
    if payment.state == "paid":
        if payment.transaction_id != status.transaction_id:
            raise AmountMismatch(f"order {payment.out_trade_no} was paid by another transaction")
        return "already"
    paid_at = status.success_time or datetime.now().astimezone()
    paid_fen = status.amount_fen or payment.amount_fen
    sibling = _payments.live_sibling(conn, payment)
    if sibling is not None and sibling.state == "paid":
        # WeChat Pay took this (closed) order's money after the sale was paid by a newer order: the money
        # is real and the sale is paid once, so this payment is recorded as a duplicate and refunded in full
        _payments.mark_duplicate(
            conn,
            payment,
            of=sibling.out_trade_no,
            transaction_id=status.transaction_id,
            paid_fen=paid_fen,
            paid_at=paid_at,
            actor=actor,
        )
        log.warning(
            "order %s paid after %s paid its sale: refunded in full",
            payment.out_trade_no,
            sibling.out_trade_no,
        )
        request_refund(
            conn,
            out_trade_no=payment.out_trade_no,
            out_refund_no=f"{payment.out_trade_no}-RD",
            refund_fen=paid_fen,
            reason="duplicate payment of a sale already paid",
            actor=actor,
        )
        return "duplicate"
    if sibling is not None:
        # a late payment of an order we had closed, while the payer's newer order of the same sale waits:
        # the late payment pays the sale; the newer order is closed (here, and at WeChat Pay by a job that
        # records it as a duplicate, refunded, if it was paid meanwhile)
        _payments.mark_state(conn, sibling, "closed", actor=actor)
        _queue.defer(conn, _queue.CLOSE_ORDER, out_trade_no=sibling.out_trade_no)
    _payments.mark_paid(
        conn,
        payment,
        transaction_id=status.transaction_id,
        paid_fen=paid_fen,
        paid_at=paid_at,
        actor=actor,
    )
    _queue.defer(conn, _queue.FOLLOW_UP_PAID, out_trade_no=payment.out_trade_no)
    link = _sale_payments.get_sale_payment(conn, payment.out_trade_no)
    if link is not None:  # a controller sale's payment: the site is told (CLEAR) once this commits
        _hooks.run(_hooks.on_paid, conn, link.sale_id)
        _queue.defer(conn, _queue.CLEAR_SALE, out_trade_no=payment.out_trade_no)
    return "paid"


def handle_notification(conn: psycopg.Connection, n: Notification) -> str:
    """Store a verified notification and apply it, in the caller's transaction. Returns 'duplicate' for a
    notification id seen before (nothing else happens), else what it changed."""
    r = n.resource
    out_trade_no = str(r.get("out_trade_no", ""))
    out_refund_no = str(r["out_refund_no"]) if n.is_refund and r.get("out_refund_no") else None
    if _payments.get_payment(conn, out_trade_no) is None:
        raise UnknownOrder(f"out_trade_no {out_trade_no[:40]!r} is not one of our orders")
    if not _payments.record_notification(
        conn,
        notification_id=n.id,
        event_type=n.event_type,
        out_trade_no=out_trade_no,
        out_refund_no=out_refund_no,
        resource=r,
    ):
        return "duplicate"
    if n.is_payment:
        return apply_order_status(conn, OrderStatus.from_resource(r), actor=_payments.ACTOR_GATEWAY)
    if n.is_refund and out_refund_no is not None:
        state = {"SUCCESS": "success", "CLOSED": "closed", "ABNORMAL": "abnormal"}.get(
            str(r.get("refund_status", "")), "processing"
        )
        changed = _payments.update_refund(
            conn,
            out_refund_no=out_refund_no,
            state=state,
            refund_id=r.get("refund_id"),
            actor=_payments.ACTOR_GATEWAY,
        )
        if changed and state == "abnormal":
            open_refund_case(conn, out_trade_no, out_refund_no, actor=_payments.ACTOR_GATEWAY)
        if changed and state == "success":
            _hooks.run_refunded(conn, out_trade_no, out_refund_no)
            _queue.defer(
                conn, _queue.FOLLOW_UP_REFUNDED, out_trade_no=out_trade_no, out_refund_no=out_refund_no
            )
        return f"refund {state}" if changed else "already"
    log.info("notification %s of type %s stored, nothing to apply", n.id, n.event_type)
    return "stored"


def open_refund_case(conn: psycopg.Connection, out_trade_no: str, out_refund_no: str, *, actor: str) -> bool:
    """A refund ended ABNORMAL (the payer's card or account refused it): a back-office case, in the
    caller's transaction. False when the payment has one already."""
    link = _sale_payments.get_sale_payment(conn, out_trade_no)
    log.warning("refund %s of %s is ABNORMAL: a back-office case", out_refund_no, out_trade_no)
    return _cases.open_case(
        conn,
        out_trade_no=out_trade_no,
        sale_id=link.sale_id if link is not None else None,
        kind="refund_abnormal",
        detail={"out_refund_no": out_refund_no, "refund_status": "ABNORMAL"},
        actor=actor,
    )


def request_refund(
    conn: psycopg.Connection,
    *,
    out_trade_no: str,
    out_refund_no: str,
    refund_fen: int,
    reason: str,
    actor: str,
) -> _payments.RefundRow:
    """Record a refund and defer the job that asks WeChat Pay for it (idempotent per out_refund_no)."""
    payment = _payments.get_payment(conn, out_trade_no, for_update=True)
    if payment is None:
        raise UnknownOrder(f"out_trade_no {out_trade_no!r} is not one of our orders")
    row, created = _payments.request_refund(
        conn, payment=payment, out_refund_no=out_refund_no, refund_fen=refund_fen, reason=reason, actor=actor
    )
    if created:
        _queue.defer(conn, _queue.REFUND, out_refund_no=out_refund_no)
    return row


def start_payment(
    db: Any,
    client: WeChatPayClient,
    *,
    sale_ref: str,
    attempt: int,
    station_id: int,
    station_name: str,
    goods: str,
    amount_fen: int,
    openid: str,
    client_ip: str,
    max_fen: int,
    actor: str,
) -> tuple[_payments.Payment, dict[str, str]]:
    """Create (or find again) the payment of a sale's attempt and its JSAPI order; return the payment and
    the wx.requestPayment parameters. Safe to repeat at any point: the payment row is stored first with its
    out_trade_no and time_expire, and the order is created from the stored values, so a retry after a
    crash gets the same prepay_id and never a second order. `db` is a store.Database."""
    if not 0 < amount_fen <= max_fen:
        raise ImplausibleValue(
            "amount_fen",
            f"a payment must be between 1 and {max_fen} fen, got {amount_fen}",
            rule="payment.amount",
            allowed={"min": "1", "max": str(max_fen)},
        )
    out_trade_no = out_trade_no_for(sale_ref, attempt)
    with db.transaction() as conn:
        payment = _payments.create_payment(
            conn,
            out_trade_no=out_trade_no,
            sale_ref=sale_ref,
            station_id=station_id,
            openid=openid,
            amount_fen=amount_fen,
            expires_at=order_expiry(datetime.now().astimezone(), client.config.order_ttl_s),
            actor=actor,
        )
    if payment.state != "created":
        raise Conflict(f"the payment {out_trade_no} is {payment.state}")
    if payment.expires_at <= datetime.now().astimezone():
        raise Conflict(f"the order {out_trade_no} expired: pay with the next attempt")
    order = client.create_jsapi_order(
        out_trade_no=payment.out_trade_no,
        amount_fen=payment.amount_fen,
        openid=payment.openid,
        expires_at=payment.expires_at,
        station_id=station_id,
        station_name=station_name,
        goods=goods,
        client_ip=client_ip,
    )
    with db.transaction() as conn:
        _payments.set_prepay_id(conn, payment.out_trade_no, order.prepay_id)
    return payment, client.request_payment_params(order.prepay_id)
