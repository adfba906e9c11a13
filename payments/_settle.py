"""Telling the site what became of a sale's payment: CLEAR once it is paid, UNLOCKTX once its order closed
unpaid. Run by the payment workers (payments/_queue.py), at least once each; applied once.

One CLEAR for one payment: the job holds the sale payment's row (SELECT ... FOR UPDATE) while it talks to
the site and records the answer in the same transaction, so a second worker on the same payment waits,
then finds it settled. A worker killed before the answer is recorded leaves nothing recorded: the job
runs again and the site answers 410 (our earlier CLEAR was applied) or clears now.

The site's answers to CLEAR (OpenFSC's retry semantics):
- OK, 410: the sale is ours and paid (410: by our earlier CLEAR);
- 403: it was paid another way (the cashier): our payment is refunded in full, automatically;
- 404: the site no longer knows the sale: a back-office case;
- 409: another payment holds it: a back-office case.
A payment paid late (its order closed unpaid and the sale unlocked, then WeChat Pay's notification came) is
CLEARed all the same: the sale is still payable (cleared now) or the cashier took it (403: refunded). One
paid late after a newer order of the same driver paid the sale is a duplicate (payments/_flow.py): refunded
in full, never CLEARed.
A station offline or a command without answer raises: the job is retried later.
"""

from __future__ import annotations

import logging

import psycopg

from forecourt import CommandReply, send_command
from payments import _hooks
from payments._flow import request_refund
from store import _cases, _payments
from store import _sale_payments as sp

log = logging.getLogger("payments.settle")
ACTOR = "payments-worker"


def refund_no_for(out_trade_no: str, kind: str = "X") -> str:
    """out_refund_no of the automatic refund of a payment (one per payment and kind)."""
    return f"{out_trade_no}-R{kind}"


def clear_sale(conn: psycopg.Connection, url: str, out_trade_no: str, *, timeout_s: float) -> str:
    """CLEAR the paid sale at its site and record the answer (see module docstring). `conn` is the
    worker's own connection (not in a transaction); `url` reaches the database for the command."""
    with conn.transaction():
        link = sp.get_sale_payment(conn, out_trade_no, for_update=True)
        if link is None:
            return "not a sale's payment"
        # 'unlocked': the order was closed unpaid and the sale released, then WeChat Pay's late notification
        # said it was paid after all: the money is real, so CLEAR now (403 if the cashier took it: refund)
        if link.site_state not in ("locked", "unlocked"):
            return f"already {link.site_state}"
        payment = _payments.get_payment(conn, out_trade_no)
        if payment is None or payment.state != "paid":
            return f"not paid ({payment.state if payment else 'unknown'})"
        if payment.duplicate_of is not None:  # the sale is another payment's; this one is refunded
            return f"a duplicate of {payment.duplicate_of}: refunded, nothing to clear"
        sale = sp.get_sale(conn, link.sale_id)
        assert sale is not None
        reply = send_command(
            url,
            sale.station_id,
            "CLEAR",
            [str(sale.pump_no), sale.site_tx_id, link.fsc_tx_id, "wechat"],
            timeout_s=timeout_s,
            requested_by=f"payments:clear:{out_trade_no}",
        )
        return _record_clear(conn, link, payment, sale, reply)


def _record_clear(
    conn: psycopg.Connection,
    link: sp.SalePayment,
    payment: _payments.Payment,
    sale: sp.Sale,
    reply: CommandReply,
) -> str:
    detail = {"command_id": reply.id, "ok": reply.ok, "code": reply.code, "text": reply.text[:200]}
    if reply.ok or reply.code == 410:
        sp.set_site_state(conn, link, "cleared", actor=ACTOR)
        _payments.claim_effect(conn, payment.out_trade_no, "cleared", detail)
        return "cleared"
    if reply.code == 403:
        sp.set_site_state(conn, link, "paid_elsewhere", actor=ACTOR)
        _payments.claim_effect(conn, payment.out_trade_no, "paid_elsewhere", detail)
        left = (payment.paid_fen or 0) - payment.refunded_fen
        if left > 0:
            try:
                request_refund(
                    conn,
                    out_trade_no=payment.out_trade_no,
                    out_refund_no=refund_no_for(payment.out_trade_no),
                    refund_fen=left,
                    reason="该笔加油已在收银台付款",
                    actor=ACTOR,
                )
            except ValueError as exc:  # other refunds asked for part of it already
                _cases.open_case(
                    conn,
                    out_trade_no=payment.out_trade_no,
                    sale_id=sale.id,
                    kind="refund_abnormal",
                    detail={**detail, "refund": str(exc)},
                    actor=ACTOR,
                )
        return "paid elsewhere: refunded"
    kind = "locked_elsewhere" if reply.code == 409 else "unknown_at_site"
    sp.set_site_state(conn, link, kind, actor=ACTOR)
    _cases.open_case(
        conn,
        out_trade_no=payment.out_trade_no,
        sale_id=sale.id,
        kind=kind,
        detail={**detail, "site_tx_id": sale.site_tx_id, "station_id": sale.station_id},
        actor=ACTOR,
    )
    _payments.claim_effect(conn, payment.out_trade_no, kind, detail)
    log.warning("CLEAR of %s answered %s: back-office case %s", payment.out_trade_no, reply.code, kind)
    return kind


def unlock_sale(conn: psycopg.Connection, url: str, out_trade_no: str, *, timeout_s: float) -> str:
    """UNLOCKTX a sale whose order closed unpaid, so the cashier can take it; nothing when the payer has a
    newer live payment of the same sale (it holds the same lock)."""
    with conn.transaction():
        link = sp.get_sale_payment(conn, out_trade_no, for_update=True)
        if link is None or link.site_state != "locked":
            return "nothing to unlock"
        payment = _payments.get_payment(conn, out_trade_no)
        if payment is None or payment.state not in ("closed", "failed"):
            return f"not closed ({payment.state if payment else 'unknown'})"
        others = [
            r
            for r in sp.payments_of_sale(conn, link.sale_id)
            if r["out_trade_no"] != out_trade_no and r["state"] in ("created", "paid")
        ]
        if others:
            sp.set_site_state(conn, link, "unlocked", actor=ACTOR)
            return "a newer payment holds the sale"
        sale = sp.get_sale(conn, link.sale_id)
        assert sale is not None
        reply = send_command(
            url,
            sale.station_id,
            "UNLOCKTX",
            [str(sale.pump_no), sale.site_tx_id, link.fsc_tx_id],
            timeout_s=timeout_s,
            requested_by=f"payments:unlock:{out_trade_no}",
        )
        sp.set_site_state(conn, link, "unlocked", actor=ACTOR)
        if reply.ok:
            sp.set_locked_by(conn, sale.id, None)
            _hooks.run(_hooks.on_unlocked, conn, sale.id)
        _payments.claim_effect(
            conn, out_trade_no, "unlocked", {"command_id": reply.id, "ok": reply.ok, "code": reply.code}
        )
        return "unlocked" if reply.ok else f"site answered {reply.code}"


def stale_locks(conn: psycopg.Connection, limit: int = 100) -> list[str]:
    """Sale payments still holding the site's lock although their order closed unpaid."""
    rows = conn.execute(
        "SELECT sp.out_trade_no FROM sale_payments sp JOIN payments p USING (out_trade_no)"
        " WHERE sp.site_state = 'locked' AND p.state IN ('closed', 'failed') ORDER BY p.updated_at LIMIT %s",
        (limit,),
    ).fetchall()
    return [str(r[0]) for r in rows]
