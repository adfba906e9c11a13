"""What other aggregates do when a controller sale is locked for a payment or paid: callables registered
here run inside the transaction that records the lock or the payment, so their changes commit with it
(or not at all). A fuelling session, for instance, registers `on_paid.append(sessions.on_sale_paid)`.

Each hook is called as `hook(conn, sale_id)` and must be idempotent: a notification redelivered after a
crash between commit and answer does not call it twice (the payment is already paid then), but a lock is
recorded again on every retried pay request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

SaleHook = Callable[[psycopg.Connection[Any], int], object]  # what a hook returns is ignored
# called as hook(conn, out_trade_no, out_refund_no) in the transaction where a refund becomes SUCCESS
RefundHook = Callable[[psycopg.Connection[Any], str, str], object]

on_locked: list[SaleHook] = []
on_paid: list[SaleHook] = []
on_unlocked: list[SaleHook] = []  # the site released the lock of an order that closed unpaid
on_refunded: list[RefundHook] = []  # a refund succeeded (once per refund: the state moves once)


def run(hooks: list[SaleHook], conn: psycopg.Connection[Any], sale_id: int) -> None:
    for hook in list(hooks):
        hook(conn, sale_id)


def run_refunded(conn: psycopg.Connection[Any], out_trade_no: str, out_refund_no: str) -> None:
    for hook in list(on_refunded):
        hook(conn, out_trade_no, out_refund_no)
