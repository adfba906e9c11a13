"""The crash matrix of a sale's payment: the API or the worker killed with SIGKILL after the order, after
the notification's commit, before and after CLEAR, and during a refund. After restart every sale ends paid
and cleared, or unpaid and unlocked, or refunded; never charged twice, never cleared twice; and the day's
reconciliation (`python -m ingest reconcile`) agrees."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from payments import _queue
from tests._payments import wait_for
from tests._sale_pay import PayStack

pytestmark = pytest.mark.slow  # real processes, killed


OUTCOMES: dict[str, str] = {}  # out_trade_no -> the end the test expects: cleared, unlocked, refunded


def _kill_workers(stack: PayStack) -> None:
    for w in stack.workers:
        w.kill()
        w.close()
    stack.workers.clear()


def _clear_jobs(stack: PayStack, no: str) -> list[dict[str, Any]]:
    with psycopg.connect(stack.db_url) as conn:
        return [j for j in _queue.jobs_of(conn, _queue.CLEAR_SALE) if j["args"] == {"out_trade_no": no}]


def _cleared_once(stack: PayStack, station: int, no: str) -> None:
    wait_for(lambda: stack.payment(no)["site_state"] == "cleared", timeout_s=40, what="the sale cleared")
    assert stack.payment(no)["state"] == "paid"
    ok = [c for c in stack.commands(station, "CLEAR") if c[1]]
    assert len(ok) == 1  # the site cleared it once (a retried CLEAR answers 410)
    assert (
        stack.sql("SELECT count(*) FROM payment_effects WHERE out_trade_no = %s AND effect = 'cleared'", no)[
            0
        ][0]
        == 1
    )
    OUTCOMES[no] = "cleared"


def test_api_killed_while_ordering_then_the_retry_resumes(stack: PayStack) -> None:
    site = stack.site()
    sale_id = stack.fuel(site, 1, "12")
    _, token = stack.user()
    key = str(uuid.uuid4())
    stack.gateway.control("slow", prefix="/v3/pay/transactions/jsapi", delay_s=3, count=1)
    answers: list[Any] = []
    t = threading.Thread(target=lambda: answers.append(_try(lambda: stack.pay(sale_id, token, key))))
    t.start()
    wait_for(
        lambda: any(r["path"] == "/v3/pay/transactions/jsapi" for r in stack.gateway.get("requests")),
        what="the order request at the gateway",
    )
    assert stack.api is not None
    stack.api.kill()  # after LOCKTX, during the order
    t.join()
    assert isinstance(answers[0], httpx.HTTPError)
    assert stack.sale(sale_id)["state"] == "locked"
    stack.restart_api()
    r = stack.pay(sale_id, token, key)  # the same key: resumes at the recovery point
    assert r.status_code == 200, r.text
    body = r.json()
    assert stack.wx_pay(body)[0] == 200
    _cleared_once(stack, site.station, body["out_trade_no"])
    assert stack.sql("SELECT count(*) FROM payments WHERE sale_ref = %s", f"fcc:{sale_id}")[0][0] == 1
    assert len(stack.commands(site.station, "LOCKTX")) == 1  # resumed after the lock, not from the start


def test_api_killed_while_ordering_and_the_driver_gone_ends_unlocked(stack: PayStack) -> None:
    site = stack.site()
    sale_id = stack.fuel(site, 2, "7")
    _, token = stack.user()
    stack.gateway.control("slow", prefix="/v3/pay/transactions/jsapi", delay_s=3, count=1)
    t = threading.Thread(target=lambda: _try(lambda: stack.pay(sale_id, token, str(uuid.uuid4()))))
    t.start()
    n = len([r for r in stack.gateway.get("requests") if r["path"] == "/v3/pay/transactions/jsapi"])
    wait_for(
        lambda: (
            len([r for r in stack.gateway.get("requests") if r["path"] == "/v3/pay/transactions/jsapi"]) > n
        ),
        what="the order request",
    )
    assert stack.api is not None
    stack.api.kill()
    t.join()
    stack.restart_api()
    (no,) = stack.sql("SELECT out_trade_no FROM payments WHERE sale_ref = %s", f"fcc:{sale_id}")[0]
    stack.sql(
        "UPDATE payments SET expires_at = now() - interval '1 second', created_at = now() - interval '16 minutes'"
        " WHERE out_trade_no = %s RETURNING 1",
        no,
    )
    stack.sweep()
    wait_for(lambda: stack.payment(no)["site_state"] == "unlocked", timeout_s=40, what="UNLOCKTX")
    assert stack.payment(no)["state"] == "closed"
    wait_for(lambda: stack.sale(sale_id)["state"] == "payable", what="payable again")
    OUTCOMES[no] = "unlocked"


def test_api_killed_after_the_notification_commit(stack: PayStack) -> None:
    site = stack.site()
    sale_id = stack.fuel(site, 1, "9")
    _, token = stack.user()
    body = stack.pay(sale_id, token, str(uuid.uuid4())).json()
    no = body["out_trade_no"]
    assert stack.wx_pay(body)[0] == 200
    wait_for(lambda: stack.payment(no)["state"] == "paid", what="paid")
    assert stack.api is not None
    stack.api.kill()  # the payment and its CLEAR job committed together: the worker needs no API
    _cleared_once(stack, site.station, no)
    stack.restart_api()
    assert stack.sql("SELECT count(*) FROM payment_notifications WHERE out_trade_no = %s", no)[0][0] == 1


def test_worker_killed_before_clear(stack: PayStack) -> None:
    site = stack.site()
    sale_id = stack.fuel(site, 2, "6")
    _, token = stack.user()
    body = stack.pay(sale_id, token, str(uuid.uuid4())).json()
    no = body["out_trade_no"]
    with psycopg.connect(stack.db_url) as conn, conn.transaction():
        conn.execute("SELECT 1 FROM sale_payments WHERE out_trade_no = %s FOR UPDATE", (no,))
        assert stack.wx_pay(body)[0] == 200
        wait_for(lambda: [j["status"] for j in _clear_jobs(stack, no)] == ["doing"], what="the CLEAR job")
        _kill_workers(stack)  # waiting for the row: no CLEAR sent
    assert stack.commands(site.station, "CLEAR") == []
    assert stack.sale(sale_id)["state"] == "locked"
    stack.add_worker()
    _cleared_once(stack, site.station, no)
    assert [c[1] for c in stack.commands(site.station, "CLEAR")] == [True]


def test_worker_killed_after_clear_before_recording_it(stack: PayStack) -> None:
    site = stack.site()
    sale_id = stack.fuel(site, 1, "11")
    _, token = stack.user()
    body = stack.pay(sale_id, token, str(uuid.uuid4())).json()
    no = body["out_trade_no"]
    with psycopg.connect(stack.db_url) as conn, conn.transaction(force_rollback=True):
        # an uncommitted row of the same effect: the worker's record of it waits behind this one
        conn.execute("INSERT INTO payment_effects (out_trade_no, effect) VALUES (%s, 'cleared')", (no,))
        assert stack.wx_pay(body)[0] == 200
        wait_for(lambda: [c[1] for c in stack.commands(site.station, "CLEAR")] == [True], what="CLEAR sent")
        wait_for(lambda: stack.sale(sale_id)["state"] == "cleared", what="cleared at the site")
        _kill_workers(stack)
    assert stack.payment(no)["site_state"] == "locked"  # nothing recorded
    stack.add_worker()
    _cleared_once(stack, site.station, no)
    assert [c[2] for c in stack.commands(site.station, "CLEAR")] == [None, 410]


def test_worker_killed_during_the_refund(stack: PayStack) -> None:
    site = stack.site()
    body = stack.ordered_then_taken_by_the_cashier(site, 2, "5")
    no = body["out_trade_no"]
    stack.gateway.control("slow", prefix="/v3/refund/domestic/refunds", delay_s=4, count=1)
    assert stack.wx_pay(body)[0] == 200
    wait_for(
        lambda: any(r["path"] == "/v3/refund/domestic/refunds" for r in stack.gateway.get("requests")),
        timeout_s=30,
        what="the refund request at the gateway",
    )
    _kill_workers(stack)  # mid-refund
    stack.add_worker()
    wait_for(lambda: stack.payment(no)["refunded_fen"] == body["amount_fen"], timeout_s=60, what="refunded")
    assert stack.sql("SELECT count(*), min(state) FROM payment_refunds WHERE out_trade_no = %s", no) == [
        (1, "success")
    ]
    order = httpx.get(f"{stack.gateway.base}/fake/orders/{no}").json()
    assert order["refunded_fen"] == body["amount_fen"]  # refunded once at WeChat Pay
    OUTCOMES[no] = "refunded"


def test_the_reconciliation_agrees(stack: PayStack, tmp_path: Path) -> None:
    assert len(OUTCOMES) >= 5, OUTCOMES
    # every sale of the module ended one of the three ways
    for no, end in OUTCOMES.items():
        p = stack.payment(no)
        if end == "cleared":
            assert (p["state"], p["site_state"], p["refunded_fen"]) == ("paid", "cleared", 0)
        elif end == "unlocked":
            assert (p["state"], p["site_state"]) == ("closed", "unlocked")
        else:
            assert (p["state"], p["site_state"], p["refunded_fen"]) == (
                "paid",
                "paid_elsewhere",
                p["paid_fen"],
            )
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    out = tmp_path / "report.json"
    run = stack.reconcile(today.isoformat(), "--output", str(out))
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(out.read_text())
    paid = {no for no, end in OUTCOMES.items() if end != "unlocked"}
    assert paid <= set(report["matched"])
    assert report["mismatches"] == [] and report["missing"] == []
    assert stack.sql("SELECT count(*) FROM reconciliation_alerts")[0][0] == 0
    # a paid transaction whose controller sale we lost is an alert
    stack.sql("DELETE FROM sale_payments WHERE out_trade_no = %s RETURNING 1", next(iter(paid)))
    again = stack.reconcile(today.isoformat())
    assert again.returncode == 1, again.stdout + again.stderr
    kinds = {r[0] for r in stack.sql("SELECT kind FROM reconciliation_alerts")}
    assert kinds == {"no_sale"}, again.stdout


def _try(call: Any) -> Any:
    try:
        return call()
    except Exception as exc:
        return exc
