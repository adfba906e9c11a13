"""Fuel e-invoices (电子发票) of paid sales: the payer's request, the jobs that apply through WeChat Pay's
fapiao application API and follow the status, and the red-letter reversal (红冲) after a refund.

An invoice request is stored with the client's Idempotency-Key and its application job in one transaction
(the outbox): the same key answers the same invoice; a payment has one invoice. The invoice follows the
rules of payments/_fapiao.py: one fuel line (成品油, the sale's grade, its volume in 升), the amount the
payer paid (minus what was refunded), the station as seller (its legal name and taxpayer id, set by an
operator), an organisation's taxpayer id.

Status: requested -> (application accepted) applied -> (blue invoice issued) issued; a refund marks the
invoice for reversal: issued -> (reversal accepted) reversing -> (red invoice issued) reversed. WeChat Pay
refusing the application: failed. The jobs run at least once and hold a procrastinate lock per invoice;
every call they make is idempotent at WeChat Pay (same fapiao_apply_id, same content).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import psycopg

from geo import Conflict, InvalidInput, NotFound
from payments import _queue
from payments._errors import GatewayError
from payments._fapiao import Buyer, FuelInvoice, FuelLine, Seller, validate_invoice
from payments._invoice_states import STATES, observe, step
from store import _invoices, _payments
from store import _sale_payments as sp

log = logging.getLogger("payments.invoice")

APPLY_INVOICE = "payments.apply_invoice"
CHECK_INVOICE = "payments.check_invoice"
ACTOR = "payments-worker"
REVERSE_REASON = "加油款已退款"
MAX_CHECKS = 60  # status checks of one invoice before it waits for the next refund or request
STATUS_PUBLIC = STATES


def fapiao_id_for(out_trade_no: str) -> str:
    """Our invoice number (the API allows 20 characters): derived from the payment, so a retry keeps it."""
    return "F" + hashlib.sha256(out_trade_no.encode()).hexdigest()[:19].upper()


def build_invoice(conn: psycopg.Connection, inv: _invoices.InvoiceRow) -> FuelInvoice:
    """The FuelInvoice of a stored request, from the payment, its sale and the station's seller identity."""
    payment = _payments.get_payment(conn, inv.out_trade_no)
    link = sp.get_sale_payment(conn, inv.out_trade_no)
    seller = _invoices.get_seller(conn, inv.seller_station_id)
    if payment is None or link is None or seller is None:
        raise NotFound(f"invoice {inv.fapiao_apply_id}: its payment, sale or seller is gone")
    sale = sp.get_sale(conn, link.sale_id)
    assert sale is not None
    buyer = Buyer(type=inv.buyer_type, name=inv.buyer_name, taxpayer_id=inv.buyer_taxpayer_id)  # type: ignore[arg-type]
    return FuelInvoice(
        fapiao_apply_id=inv.fapiao_apply_id,
        fapiao_id=inv.fapiao_id,
        buyer=buyer,
        seller=Seller(station_id=seller.station_id, name=seller.legal_name, taxpayer_id=seller.taxpayer_id),
        lines=(FuelLine(grade=sale.grade, volume_ml=sale.volume_ml, amount_fen=inv.total_fen),),
    )


def request_invoice(
    conn: psycopg.Connection, *, out_trade_no: str, user_id: int, key: str, buyer: Buyer
) -> tuple[_invoices.InvoiceRow, bool]:
    """Record the payer's invoice request and defer its application, in the caller's transaction;
    (the invoice, whether it was created now). The caller checked that user_id owns the payment.
    Raises InvalidInput (the key was used for another request), NotFound, Conflict (not paid, refunded,
    invoiced already, no seller identity) and InvalidInvoice (a fuel-invoice rule, naming the field)."""
    asked = {
        "out_trade_no": out_trade_no,
        "type": buyer.type,
        "name": buyer.name,
        "taxpayer_id": buyer.taxpayer_id,
    }
    earlier = _invoices.invoice_by_key(conn, user_id, key)
    if earlier is not None:
        if earlier.request != asked:
            raise InvalidInput("Idempotency-Key", "was used for another request: use a new key for this one")
        return earlier, False
    payment = _payments.get_payment(conn, out_trade_no, for_update=True)
    link = sp.get_sale_payment(conn, out_trade_no)
    if payment is None or link is None:
        raise NotFound(f"payment {out_trade_no} not found")
    if payment.state != "paid" or payment.paid_fen is None:
        raise Conflict(f"payment {out_trade_no} is {payment.state}: only a paid sale is invoiced")
    left = payment.paid_fen - payment.refunded_fen
    if left <= 0:
        raise Conflict(f"payment {out_trade_no} was refunded: there is nothing to invoice")
    existing = _invoices.invoice_of_payment(conn, out_trade_no)
    if existing is not None:
        raise Conflict(f"payment {out_trade_no} has an invoice already (status {existing.status})")
    station_id = payment.station_id
    seller = _invoices.get_seller(conn, station_id) if station_id is not None else None
    if station_id is None or seller is None:
        raise Conflict(
            f"station {station_id} has no seller identity (taxpayer id) yet: it cannot issue invoices"
        )
    sale = sp.get_sale(conn, link.sale_id)
    assert sale is not None
    fuel = FuelInvoice(
        fapiao_apply_id=out_trade_no,
        fapiao_id=fapiao_id_for(out_trade_no),
        buyer=buyer,
        seller=Seller(station_id=station_id, name=seller.legal_name, taxpayer_id=seller.taxpayer_id),
        lines=(FuelLine(grade=sale.grade, volume_ml=sale.volume_ml, amount_fen=left),),
    )
    validate_invoice(fuel)
    row = _invoices.create_invoice(
        conn,
        fapiao_apply_id=fuel.fapiao_apply_id,
        out_trade_no=out_trade_no,
        fapiao_id=fuel.fapiao_id,
        user_id=user_id,
        idempotency_key=key,
        request=asked,
        buyer_type=buyer.type,
        buyer_name=buyer.name,
        buyer_taxpayer_id=buyer.taxpayer_id,
        seller_station_id=station_id,
        total_fen=left,
        actor=f"user:{user_id}",
    )
    if row is None:
        raise Conflict(f"payment {out_trade_no} has an invoice already")
    defer(conn, APPLY_INVOICE, row.fapiao_apply_id)
    return row, True


def reverse_after_refund(conn: psycopg.Connection, out_trade_no: str, *, actor: str = ACTOR) -> bool:
    """A refund of the payment succeeded: its invoice (if any, and not failed or reversed) is marked for
    red-letter reversal, and the status job does it once the invoice is issued. In the caller's
    transaction; False when there is nothing (new) to reverse."""
    inv = _invoices.invoice_of_payment(conn, out_trade_no, for_update=True)
    if inv is None or inv.status in ("failed", "reversing", "reversed"):
        return False
    if not _invoices.want_reversal(conn, inv, actor=actor):
        return False
    if inv.status == "issued":
        defer(conn, CHECK_INVOICE, inv.fapiao_apply_id)
    return True


def defer(conn: psycopg.Connection, task: str, fapiao_apply_id: str, *, in_s: float = 0) -> None:
    """Defer an invoice job in the caller's transaction; the jobs of one invoice never run at once."""
    options: dict[str, Any] = {
        "connection": conn,
        "queue": _queue.QUEUE,
        "lock": f"invoice:{fapiao_apply_id}",
    }
    if in_s > 0:
        options["schedule_in"] = {"seconds": in_s}
    _queue._outbox.configure_task(task, **options).defer(fapiao_apply_id=fapiao_apply_id)


def _next_check_s(checks: int) -> float:
    return float(min(2 ** (checks // 5), 300))


# ---- the jobs -------------------------------------------------------------------------------------------


@_queue.app.task(name=APPLY_INVOICE, queue=_queue.QUEUE, retry=_queue._RETRY)
def apply_invoice(fapiao_apply_id: str) -> str:
    """Send a requested invoice to WeChat Pay's fapiao application API (idempotent per apply id)."""
    rt = _queue.runtime()
    with rt.connect() as conn:
        inv = _invoices.get_invoice(conn, fapiao_apply_id)
        if inv is None:
            return "unknown invoice"
        if inv.status != "requested":
            return f"already {inv.status}"
        fuel = build_invoice(conn, inv)
    try:
        rt.client.apply_invoice(fuel)
    except GatewayError as exc:
        if exc.retryable:
            raise
        with rt.connect() as conn, conn.transaction():
            current = _invoices.get_invoice(conn, fapiao_apply_id, for_update=True)
            if current is not None and current.status == "requested":
                _invoices.set_status(
                    conn,
                    current,
                    step(current.status, "refused"),
                    detail={"error": f"{exc.code}: {exc.message}"[:300]},
                    actor=ACTOR,
                )
        log.warning("invoice %s refused by WeChat Pay: %s", fapiao_apply_id, exc)
        return "failed"
    with rt.connect() as conn, conn.transaction():
        current = _invoices.get_invoice(conn, fapiao_apply_id, for_update=True)
        if current is None or current.status != "requested":
            return "already applied"
        _invoices.set_status(conn, current, step(current.status, "applied"), actor=ACTOR)
        defer(conn, CHECK_INVOICE, fapiao_apply_id, in_s=1)
    return "applied"


@_queue.app.task(name=CHECK_INVOICE, queue=_queue.QUEUE, retry=_queue._RETRY)
def check_invoice(fapiao_apply_id: str) -> str:
    """Follow an invoice at WeChat Pay: record it issued (its number), reverse it when its payment was
    refunded, record it reversed; check again later while WeChat Pay is still working on it."""
    rt = _queue.runtime()
    with rt.connect() as conn:
        inv = _invoices.get_invoice(conn, fapiao_apply_id)
    if inv is None or inv.status in ("requested", "failed", "reversed"):
        return f"nothing to check ({inv.status if inv else 'unknown'})"
    found = [
        f
        for f in rt.client.query_invoice(fapiao_apply_id, inv.fapiao_id)
        if f.get("fapiao_id") == inv.fapiao_id
    ]
    remote = str(found[0].get("status", "")) if found else ""
    blue = found[0].get("blue_fapiao") if found else None
    red = found[0].get("red_fapiao") if found else None
    if inv.reverse_wanted and remote == "ISSUED" and isinstance(blue, dict):
        rt.client.reverse_invoice(
            fapiao_apply_id,
            reason=REVERSE_REASON,
            fapiao_id=inv.fapiao_id,
            fapiao_code=str(blue.get("fapiao_code", "")),
            fapiao_number=str(blue.get("fapiao_number", "")),
        )
        remote = "REVERSE_ACCEPTED"
    detail: dict[str, Any] = {"checks": int(inv.detail.get("checks", 0)) + 1, "remote_status": remote}
    if isinstance(blue, dict):
        detail["fapiao_number"] = blue.get("fapiao_number")
        detail["fapiao_time"] = blue.get("fapiao_time")
    if isinstance(red, dict):
        detail["red_fapiao_number"] = red.get("fapiao_number")
    with rt.connect() as conn, conn.transaction():
        current = _invoices.get_invoice(conn, fapiao_apply_id, for_update=True)
        if current is None:
            return "unknown invoice"
        # the transition table decides: a late or repeated answer never moves the invoice back
        status = observe(current.status, remote, reverse_wanted=current.reverse_wanted or inv.reverse_wanted)
        _invoices.set_status(conn, current, status, detail=detail, actor=ACTOR)
        waiting = status in ("applied", "reversing") or (status == "issued" and current.reverse_wanted)
        if waiting and detail["checks"] < MAX_CHECKS:
            defer(conn, CHECK_INVOICE, fapiao_apply_id, in_s=_next_check_s(detail["checks"]))
    return status
