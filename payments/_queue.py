"""Durable follow-ups of payments: a transactional outbox and a queue in one, with procrastinate.

Why procrastinate: the outbox must commit with the business change, and procrastinate's job table lives
in our PostgreSQL, so deferring a job on the transaction's own connection *is* writing the outbox row
(no relay process, no second system that can disagree with the database). It runs on psycopg 3, which the
store already uses; its workers take jobs with SELECT ... FOR UPDATE SKIP LOCKED, LISTEN/NOTIFY wakes them,
and they send heartbeats, so the jobs of a worker that died (SIGKILL, power) are found and run again:
delivery is at least once, and every consumer here is idempotent (payment_effects, out_refund_no).
pgqueuer would do as well but brings uvloop and typer; RabbitMQ or NATS would need an outbox relay and
keep a second copy of the truth. Redis keeps nothing on disk here: never the record.

Workers are their own process: `python -m payments worker` (see payments/__main__.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime
from typing import Any

import psycopg
from procrastinate import App, PsycopgConnector, RetryStrategy
from procrastinate.exceptions import AlreadyEnqueued

from payments import _hooks

log = logging.getLogger("payments.queue")

QUEUE = "payments"
FOLLOW_UP_PAID = "payments.follow_up_paid"
FOLLOW_UP_REFUNDED = "payments.follow_up_refunded"
REFUND = "payments.refund"
SWEEP = "payments.sweep_open_orders"
CLEAR_SALE = "payments.clear_sale"
UNLOCK_SALE = "payments.unlock_sale"
CLOSE_ORDER = "payments.close_order"
EXPIRE_POINTS = "payments.expire_points"
PURGE_STAFF_SESSIONS = "payments.purge_staff_sessions"

# The worker's app: its connector is replaced by an opened (async) one in run_worker_async.
app = App(connector=PsycopgConnector())
# Deferring always goes through the caller's own (sync) connection: this app's connector is never opened,
# so it works the same in the API and inside a job running on a worker thread.
_outbox = App(connector=PsycopgConnector())

# Gateway trouble is retried with growing waits: 2 s, 4 s, 8 s ... up to about 15 minutes in all.
_RETRY = RetryStrategy(max_attempts=10, exponential_wait=2)


def defer(conn: psycopg.Connection, task: str, **kwargs: Any) -> int:
    """Defer a job on `conn`, inside its transaction: it exists if and only if that transaction commits."""
    if task not in app.tasks:
        raise ValueError(f"no task {task!r}")
    return _outbox.configure_task(task, connection=conn, queue=QUEUE).defer(**kwargs)


def defer_once(conn: psycopg.Connection, task: str, lock: str, **kwargs: Any) -> bool:
    """Defer a job unless one with the same queueing lock is still waiting; False when one is. Runs in a
    savepoint: the refused insert leaves the caller's transaction usable."""
    if task not in app.tasks:
        raise ValueError(f"no task {task!r}")
    try:
        with conn.transaction():
            _outbox.configure_task(task, connection=conn, queue=QUEUE, queueing_lock=lock).defer(**kwargs)
    except AlreadyEnqueued:
        return False
    return True


# ---- what the jobs need, built once per worker process -----------------------------------------------


class _Runtime:
    def __init__(self) -> None:
        from config import get_settings
        from payments._wechatpay import PayConfig, WeChatPayClient

        self.settings = get_settings()
        self.client = WeChatPayClient(PayConfig.from_settings(self.settings))
        self.url = self.settings.service_url

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, application_name="lijiang-fuel-payments")


_runtime: _Runtime | None = None
_runtime_lock = threading.Lock()


def runtime() -> _Runtime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = _Runtime()
        return _runtime


# ---- the jobs ----------------------------------------------------------------------------------------


@app.task(name=FOLLOW_UP_PAID, queue=QUEUE, retry=_RETRY)
def follow_up_paid(out_trade_no: str) -> str:
    """After a payment is recorded: confirm it with WeChat Pay's own query (a notification is trusted for
    its signature; the query double-checks amount and state) and record the confirmation once. The
    station's CLEAR joins here as another effect when sessions are wired."""
    from payments._errors import AmountMismatch
    from store import _payments

    rt = runtime()
    with rt.connect() as conn:
        if "confirmed" in _payments.effects(conn, out_trade_no):
            return "already confirmed"
    status = rt.client.query_order(out_trade_no)  # may take long, may be killed: nothing is held meanwhile
    with rt.connect() as conn, conn.transaction():
        payment = _payments.get_payment(conn, out_trade_no, for_update=True)
        if payment is None:
            return "unknown order"
        if status.trade_state not in ("SUCCESS", "REFUND") or status.amount_fen != payment.amount_fen:
            raise AmountMismatch(
                f"order {out_trade_no}: query says {status.trade_state} {status.amount_fen} fen"
            )
        won = _payments.claim_effect(
            conn,
            out_trade_no,
            "confirmed",
            {"transaction_id": status.transaction_id, "trade_state": status.trade_state},
        )
    return "confirmed" if won else "already confirmed"


@app.task(name=REFUND, queue=QUEUE, retry=_RETRY)
def refund(out_refund_no: str) -> str:
    """Ask WeChat Pay for a recorded refund. Idempotent: the same out_refund_no never refunds twice."""
    from store import _payments

    rt = runtime()
    with rt.connect() as conn:
        row = conn.execute(
            "SELECT r.out_trade_no, r.refund_fen, r.reason, r.state, p.paid_fen FROM payment_refunds r"
            " JOIN payments p USING (out_trade_no) WHERE r.out_refund_no = %s",
            (out_refund_no,),
        ).fetchone()
    if row is None:
        return "unknown refund"
    out_trade_no, refund_fen, reason, state, paid_fen = row
    if state in ("success", "closed"):
        return state
    result = rt.client.refund(
        out_trade_no=out_trade_no,
        out_refund_no=out_refund_no,
        refund_fen=refund_fen,
        total_fen=paid_fen,
        reason=reason,
    )
    new_state = {"SUCCESS": "success", "CLOSED": "closed", "ABNORMAL": "abnormal"}.get(
        result.status, "processing"
    )
    with rt.connect() as conn, conn.transaction():
        changed = _payments.update_refund(
            conn,
            out_refund_no=out_refund_no,
            state=new_state,
            refund_id=result.refund_id,
            actor="payments-worker",
        )
        if changed and new_state == "abnormal":
            from payments._flow import open_refund_case

            open_refund_case(conn, out_trade_no, out_refund_no, actor="payments-worker")
        if changed and new_state == "success":
            _hooks.run_refunded(conn, out_trade_no, out_refund_no)
            defer(conn, FOLLOW_UP_REFUNDED, out_trade_no=out_trade_no, out_refund_no=out_refund_no)
    return new_state


@app.task(name=FOLLOW_UP_REFUNDED, queue=QUEUE, retry=_RETRY)
def follow_up_refunded(out_trade_no: str, out_refund_no: str) -> str:
    """After a refund succeeded: record it once, and have the payment's e-invoice reversed (红冲)."""
    from payments import _invoice
    from store import _payments

    rt = runtime()
    with rt.connect() as conn, conn.transaction():
        won = _payments.claim_effect(conn, out_trade_no, f"refunded:{out_refund_no}", {})
        if won:
            _invoice.reverse_after_refund(conn, out_trade_no)
    return "recorded" if won else "already recorded"


@app.task(name=CLEAR_SALE, queue=QUEUE, retry=_RETRY)
def clear_sale(out_trade_no: str) -> str:
    """After a sale's payment is recorded: CLEAR the sale at its site, once (payments/_settle.py)."""
    from payments import _settle

    rt = runtime()
    with rt.connect() as conn:
        return _settle.clear_sale(conn, rt.url, out_trade_no, timeout_s=rt.settings.payments_site_timeout_s)


@app.task(name=CLOSE_ORDER, queue=QUEUE, retry=_RETRY)
def close_order(out_trade_no: str) -> str:
    """Close at WeChat Pay an order we closed because an earlier order of its sale was paid late. When the
    payer paid it meanwhile (ORDERPAID), it is recorded from WeChat Pay's answer: a duplicate, refunded."""
    from payments._errors import GatewayError
    from payments._flow import apply_order_status

    rt = runtime()
    try:
        rt.client.close_order(out_trade_no)
        return "closed"
    except GatewayError as exc:
        if exc.code != "ORDERPAID":
            raise
    status = rt.client.query_order(out_trade_no)
    with rt.connect() as conn, conn.transaction():
        return apply_order_status(conn, status, actor="payments-worker")


@app.task(name=UNLOCK_SALE, queue=QUEUE, retry=_RETRY)
def unlock_sale(out_trade_no: str) -> str:
    """After a sale's order closed unpaid: UNLOCKTX the sale so the cashier can take it."""
    from payments import _settle

    rt = runtime()
    with rt.connect() as conn:
        return _settle.unlock_sale(conn, rt.url, out_trade_no, timeout_s=rt.settings.payments_site_timeout_s)


@app.periodic(cron="17 * * * *", periodic_id="expire-points")
@app.task(name=EXPIRE_POINTS, queue=QUEUE, queueing_lock=EXPIRE_POINTS)
def expire_points(timestamp: int | None = None) -> dict[str, int]:
    """Hourly: void the points holds of orders closed unpaid, expire points lots that are due (FIFO)."""
    from payments import _points

    return _points.expire_points(runtime().connect)


@app.periodic(cron="41 * * * *", periodic_id="purge-staff-sessions")
@app.task(name=PURGE_STAFF_SESSIONS, queue=QUEUE, queueing_lock=PURGE_STAFF_SESSIONS)
def purge_staff_sessions(timestamp: int | None = None) -> dict[str, int]:
    """Hourly: delete the station console sessions that have expired (store/_staff.py)."""
    from store._staff import purge_expired_sessions

    with runtime().connect() as conn:
        return {"deleted": purge_expired_sessions(conn, now=datetime.now(UTC))}


@app.periodic(cron="* * * * *", periodic_id="sweep")
@app.task(name=SWEEP, queue=QUEUE, queueing_lock=SWEEP)
def sweep_open_orders(timestamp: int | None = None) -> dict[str, int]:
    """When no notification comes: query every order still waiting after payments_sweep_after_s; record it
    paid when it was, close it at WeChat Pay when it expired unpaid, leave it otherwise. Then the sales:
    a closed order's sale still locked at the site is unlocked (UNLOCKTX) so the cashier can take it, and
    a paid sale the site has not cleared yet gets its CLEAR job again (one lost to a failed job)."""
    from payments import _settle
    from payments._errors import GatewayError
    from payments._flow import apply_order_status
    from store import _payments, _sale_payments

    rt = runtime()
    counts = {"paid": 0, "closed": 0, "waiting": 0, "unlock": 0, "clear": 0}
    with rt.connect() as conn:
        waiting = _payments.open_payments(conn, older_than_s=rt.settings.payments_sweep_after_s)
    for p in waiting:
        try:
            status = rt.client.query_order(p.out_trade_no)
        except GatewayError as exc:
            if exc.code != "ORDER_NOT_EXIST":
                raise
            status = None
        expired = p.expires_at <= datetime.now(UTC)
        with rt.connect() as conn, conn.transaction():
            if status is not None and status.trade_state in ("SUCCESS", "REFUND"):
                if apply_order_status(conn, status, actor="payments-sweep") == "paid":
                    counts["paid"] += 1
                continue
            if not expired and (status is None or status.trade_state in ("NOTPAY", "USERPAYING")):
                counts["waiting"] += 1
                continue
            if status is not None and status.trade_state in ("NOTPAY", "USERPAYING", "PAYERROR"):
                rt.client.close_order(p.out_trade_no)  # idempotent; ORDERPAID raises and the job retries
            current = _payments.get_payment(conn, p.out_trade_no, for_update=True)
            if current is not None and current.state == "created":
                _payments.mark_state(conn, current, "closed", actor="payments-sweep")
                _payments.claim_effect(
                    conn, p.out_trade_no, "closed", {"trade_state": status.trade_state if status else None}
                )
                counts["closed"] += 1
    with rt.connect() as conn, conn.transaction():
        for no in _settle.stale_locks(conn):
            counts["unlock"] += defer_once(conn, UNLOCK_SALE, f"unlock:{no}", out_trade_no=no)
        for no in _sale_payments.unsettled_paid(conn, older_than_s=rt.settings.payments_sweep_after_s):
            counts["clear"] += defer_once(conn, CLEAR_SALE, f"clear:{no}", out_trade_no=no)
    return counts


# ---- the worker process --------------------------------------------------------------------------------


async def _requeue_stalled(stalled_after_s: float, every_s: float) -> None:
    """Jobs left 'doing' by a worker that stopped sending heartbeats (killed) run again."""
    while True:
        try:
            stalled = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after_s)
            for job in stalled:
                log.warning("job %s (%s) of a silent worker runs again", job.id, job.task_name)
                await app.job_manager.retry_job(job)
        except Exception:  # the loop reports and goes on: the next round may succeed
            log.exception("requeueing stalled jobs failed")
        await asyncio.sleep(every_s)


async def run_worker_async(url: str, *, concurrency: int, heartbeat_s: float, stalled_after_s: float) -> None:
    connector = PsycopgConnector(conninfo=url, kwargs={"application_name": "lijiang-fuel-payments-worker"})
    with app.replace_connector(connector):
        async with app.open_async():
            requeue = asyncio.create_task(_requeue_stalled(stalled_after_s, max(heartbeat_s, 0.5)))
            try:
                await app.run_worker_async(
                    queues=[QUEUE],
                    concurrency=concurrency,
                    update_heartbeat_interval=heartbeat_s,
                    stalled_worker_timeout=stalled_after_s,
                    wait=True,
                )
            finally:
                requeue.cancel()


def jobs_of(conn: psycopg.Connection, task: str) -> list[dict[str, Any]]:
    """The jobs of a task with their status and attempts (tests, operators)."""
    rows = conn.execute(
        "SELECT id, status::text, attempts, args FROM procrastinate_jobs WHERE task_name = %s ORDER BY id",
        (task,),
    ).fetchall()
    return [{"id": r[0], "status": r[1], "attempts": r[2], "args": r[3]} for r in rows]
