"""The payment flow across real processes: the fake WeChat Pay gateway, the API (notify endpoint) and the
payments worker (procrastinate), on a throwaway PostgreSQL. Faults switched on in the fake (duplicates,
reordering, drops) and a worker killed with SIGKILL mid-job leave one payment and one effect each."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from payments import WeChatPayClient, _queue
from payments._flow import request_refund, start_payment
from payments._keys import DevKeys, ensure_dev_keys
from store import Database
from tests._payments import (
    ApiProcess,
    FakeGatewayProcess,
    WorkerProcess,
    client_for,
    notification_body,
    notification_headers,
    payment_env,
    service_env,
    wait_for,
)
from tests._servers import free_port


class Stack:
    def __init__(
        self, db_url: str, keys: DevKeys, gateway: FakeGatewayProcess, api: ApiProcess, env: dict[str, str]
    ) -> None:
        self.db_url, self.keys, self.gateway, self.api, self.env = db_url, keys, gateway, api, env
        self.notify_url = api.base + "/v1/payments/wechat/notify"
        self.client: WeChatPayClient = client_for(keys, gateway.base, notify_url=self.notify_url)
        self.db = Database(db_url, min_size=1, max_size=4)
        self.db.open()
        self.worker: WorkerProcess | None = WorkerProcess(env)

    def start_worker(self) -> None:
        self.worker = WorkerProcess(self.env)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
        self.db.close()

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db_url) as conn:
            return conn.execute(query, params).fetchall()  # type: ignore[arg-type]

    def start(self, amount_fen: int = 25_000, openid: str = "o-driver") -> tuple[str, dict[str, str]]:
        payment, params = start_payment(
            self.db,
            self.client,
            sale_ref=f"sale-{uuid.uuid4().hex}",
            attempt=0,
            station_id=7,
            station_name="丽江束河加油站",
            goods="95号汽油",
            amount_fen=amount_fen,
            openid=openid,
            client_ip="127.0.0.1",
            max_fen=500_000,
            actor="test",
        )
        return payment.out_trade_no, params

    def state(self, out_trade_no: str) -> str:
        return str(self.sql("SELECT state FROM payments WHERE out_trade_no = %s", out_trade_no)[0][0])

    def paid_by(self, out_trade_no: str) -> list[str]:
        """Who marked the payment paid (its audit rows): the notification (wechatpay) or a sweep."""
        rows = self.sql(
            "SELECT actor FROM audit_log WHERE entity = 'payment' AND entity_id = %s AND new_value->>'state' = 'paid'"
            " ORDER BY id",
            out_trade_no,
        )
        return [r[0] for r in rows]

    def effects(self, out_trade_no: str) -> list[str]:
        return [
            r[0] for r in self.sql("SELECT effect FROM payment_effects WHERE out_trade_no = %s", out_trade_no)
        ]


@pytest.fixture(scope="module")
def stack(module_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    keys = ensure_dev_keys(tmp_path_factory.mktemp("wechatpay-keys"))
    gateway = FakeGatewayProcess(keys.folder, time_factor=0.02)  # retries after 0.3 s, 0.3 s, 0.6 s, ...
    api = None
    s = None
    try:
        port = free_port()  # the API's notify URL is in its own settings
        notify = f"http://127.0.0.1:{port}/v1/payments/wechat/notify"
        env = service_env(
            module_db,
            {
                **payment_env(keys, gateway, notify),
                "FUEL_PAYMENTS_HEARTBEAT_S": "0.5",
                "FUEL_PAYMENTS_STALLED_AFTER_S": "2",
                "FUEL_PAYMENTS_SWEEP_AFTER_S": "0.5",
            },
        )
        api = ApiProcess(env, port=port)
        s = Stack(module_db, keys, gateway, api, env)
        yield s
    finally:
        if s is not None:
            s.close()
        if api is not None:
            api.close()
        gateway.close()


def test_pay_notify_record_and_follow_up_once(stack: Stack) -> None:
    no, params = stack.start()
    assert stack.state(no) == "created"
    status, body = stack.gateway.control("pay", **params)
    assert (status, body["errMsg"]) == (200, "requestPayment:ok")
    wait_for(lambda: stack.state(no) == "paid", what="the notification to mark the payment paid")
    wait_for(lambda: "confirmed" in stack.effects(no), what="the worker's follow-up")
    paid = stack.sql("SELECT paid_fen, transaction_id FROM payments WHERE out_trade_no = %s", no)[0]
    assert paid[0] == 25_000 and paid[1]
    assert stack.sql("SELECT count(*) FROM payment_notifications WHERE out_trade_no = %s", no)[0][0] == 1
    audit = stack.sql(
        "SELECT actor, new_value->>'state' FROM audit_log WHERE entity = 'payment' AND entity_id = %s ORDER BY id",
        no,
    )
    assert audit[-1] == ("wechatpay", "paid")
    # the retried pay request gives the same order (same prepay_id), never a second one
    with psycopg.connect(stack.db_url) as conn:
        sale_ref = conn.execute("SELECT sale_ref FROM payments WHERE out_trade_no = %s", (no,)).fetchone()[0]  # type: ignore[index]
    with pytest.raises(Exception, match="paid"):
        start_payment(
            stack.db,
            stack.client,
            sale_ref=sale_ref,
            attempt=0,
            station_id=7,
            station_name="x",
            goods="y",
            amount_fen=25_000,
            openid="o-driver",
            client_ip="127.0.0.1",
            max_fen=500_000,
            actor="test",
        )


def test_duplicated_and_reordered_notifications_record_each_payment_once(stack: Stack) -> None:
    stack.gateway.control("faults", fault="reorder")
    stack.gateway.control("faults", fault="duplicate", count=2)
    nos = []
    for _ in range(3):
        no, params = stack.start(amount_fen=10_000 + len(nos))
        assert stack.gateway.control("pay", **params)[0] == 200
        nos.append(no)
    for no in nos:
        wait_for(lambda no=no: stack.state(no) == "paid", what=f"{no} paid")
        wait_for(lambda no=no: "confirmed" in stack.effects(no), what=f"{no} confirmed")
    deliveries = [d for d in stack.gateway.get("notifications") if d["resource"].get("out_trade_no") in nos]
    assert {d["fault"] for d in deliveries} == {"reorder", "duplicate"}
    dup = [d for d in deliveries if d["fault"] == "duplicate"]
    assert all(sum(a["status"] in (200, 204) for a in d["attempts"]) == 2 for d in dup)  # both answered
    for no in nos:
        assert stack.sql("SELECT count(*) FROM payment_notifications WHERE out_trade_no = %s", no)[0][0] == 1
        assert stack.effects(no).count("confirmed") == 1
    # the reordered notification arrived after a later one
    first_at = {d["resource"]["out_trade_no"]: d["attempts"][0]["at"] for d in deliveries}
    assert first_at[nos[0]] > first_at[nos[1]]


def test_a_dropped_notification_is_made_up_by_querying_the_order(stack: Stack) -> None:
    stack.gateway.control("faults", fault="drop")
    no, params = stack.start(amount_fen=8_800)
    assert stack.gateway.control("pay", **params)[0] == 200
    time.sleep(1.0)
    # no notification came; only the once-a-minute sweep may have queried the order in that second
    assert stack.state(no) == "created" or stack.paid_by(no) == ["payments-sweep"]
    with psycopg.connect(stack.db_url) as conn, conn.transaction():
        _queue.defer(conn, _queue.SWEEP)  # what the periodic sweep does each minute
    try:
        wait_for(lambda: stack.state(no) == "paid", what="the sweep to query the order")
    except AssertionError:
        print(_debug_dump(stack))
        raise
    wait_for(lambda: "confirmed" in stack.effects(no), what="follow-up")
    assert stack.sql("SELECT count(*) FROM payment_notifications WHERE out_trade_no = %s", no)[0][0] == 0


def _envelope(
    stack: Stack, resource: dict[str, Any], *, key: bytes | None = None, tamper: bool = False
) -> bytes:
    return notification_body(stack.keys, resource, apiv3=key, tamper=tamper)


def _post(
    stack: Stack, body: bytes, *, signer: Any = None, serial: str | None = None, stamp: int | None = None
) -> int:
    headers = notification_headers(stack.keys, body, stamp=stamp, signer=signer, serial=serial)
    return httpx.post(stack.notify_url, content=body, headers=headers, timeout=10).status_code


def test_bad_notifications_are_refused_and_leave_nothing(stack: Stack) -> None:
    no, _ = stack.start(amount_fen=5_000, openid="o-bad")
    good = {
        "out_trade_no": no,
        "transaction_id": "4200000000000000000001",
        "trade_state": "SUCCESS",
        "amount": {"total": 5_000, "payer_total": 5_000},
        "payer": {"openid": "o-bad"},
        "success_time": "2026-01-01T10:00:00+08:00",
    }

    def count() -> int:
        return int(
            stack.sql(
                "SELECT (SELECT count(*) FROM payment_notifications) + (SELECT count(*) FROM payment_effects)"
            )[0][0]
        )

    before = count()
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert _post(stack, _envelope(stack, good), signer=stranger) == 401  # forged signature
    assert _post(stack, _envelope(stack, good), stamp=int(time.time()) - 600) == 401  # stale
    assert _post(stack, _envelope(stack, good), stamp=int(time.time()) + 600) == 401  # from the future
    assert _post(stack, _envelope(stack, good), serial="PUB_KEY_ID_SOMEONE_ELSE") == 401  # unknown serial
    assert _post(stack, _envelope(stack, good, tamper=True)) == 400  # bad ciphertext
    assert _post(stack, _envelope(stack, good, key=b"k" * 32)) == 400  # another APIv3 key
    assert _post(stack, _envelope(stack, {**good, "out_trade_no": "LFNOTOURS0000000000000000000A0"})) == 404
    assert _post(stack, _envelope(stack, {**good, "amount": {"total": 4_999, "payer_total": 4_999}})) == 409
    assert _post(stack, _envelope(stack, {**good, "payer": {"openid": "o-someone-else"}})) == 409
    assert httpx.post(stack.notify_url, content=b"{}", timeout=10).status_code == 401  # no headers at all
    assert httpx.post(stack.notify_url, content=b"x" * 70_000, timeout=10).status_code == 413
    assert count() == before and stack.state(no) == "created"
    # the same notification, correctly signed, is accepted once and its redelivery changes nothing
    body = _envelope(stack, good)
    assert _post(stack, body) == 204 and _post(stack, body) == 204
    assert stack.state(no) == "paid"
    assert stack.sql("SELECT count(*) FROM payment_notifications WHERE out_trade_no = %s", no)[0][0] == 1


def test_a_worker_killed_mid_job_leaves_the_job_to_another_which_applies_it_once(stack: Stack) -> None:
    assert stack.worker is not None
    no, params = stack.start(amount_fen=6_600)
    # the worker's confirming query of this order will hang for 6 s at the gateway
    stack.gateway.control("slow", prefix=f"/v3/pay/transactions/out-trade-no/{no}", delay_s=6, count=1)
    assert stack.gateway.control("pay", **params)[0] == 200
    wait_for(lambda: stack.state(no) == "paid", what="paid")

    def queried() -> list[dict[str, Any]]:
        return [r for r in stack.gateway.get("requests") if r["path"].endswith(no)]

    wait_for(queried, what="the worker's query to reach the gateway")
    stack.worker.kill()  # SIGKILL mid-job: the job stays 'doing' with a worker that never beats again
    jobs = [j for j in _jobs(stack) if j["args"] == {"out_trade_no": no}]
    assert [j["status"] for j in jobs] == ["doing"]
    assert "confirmed" not in stack.effects(no)
    stack.start_worker()
    wait_for(lambda: "confirmed" in stack.effects(no), timeout_s=30, what="another worker to finish the job")
    wait_for(
        lambda: [j["status"] for j in _jobs(stack) if j["args"] == {"out_trade_no": no}] == ["succeeded"],
        what="job done",
    )
    assert stack.effects(no).count("confirmed") == 1
    assert len(queried()) >= 2  # delivered at least once: the query ran again


def _jobs(stack: Stack) -> list[dict[str, Any]]:
    with psycopg.connect(stack.db_url) as conn:
        return _queue.jobs_of(conn, _queue.FOLLOW_UP_PAID)


def test_refunds_partial_and_full_idempotent_with_their_notifications(stack: Stack) -> None:
    no, params = stack.start(amount_fen=30_000)
    assert stack.gateway.control("pay", **params)[0] == 200
    wait_for(lambda: stack.state(no) == "paid", what="paid")
    with stack.db.transaction() as conn:
        request_refund(
            conn,
            out_trade_no=no,
            out_refund_no=f"RF1{no[-20:]}",
            refund_fen=10_000,
            reason="少加",
            actor="test",
        )
    with stack.db.transaction() as conn:  # a retried request: the same refund, no second job
        request_refund(
            conn,
            out_trade_no=no,
            out_refund_no=f"RF1{no[-20:]}",
            refund_fen=10_000,
            reason="少加",
            actor="test",
        )
    with stack.db.transaction() as conn, pytest.raises(ValueError, match="exceeds"):
        request_refund(
            conn, out_trade_no=no, out_refund_no=f"RF2{no[-20:]}", refund_fen=20_001, reason="x", actor="test"
        )
    with stack.db.transaction() as conn:
        request_refund(
            conn,
            out_trade_no=no,
            out_refund_no=f"RF3{no[-20:]}",
            refund_fen=20_000,
            reason="取消",
            actor="test",
        )
    wait_for(
        lambda: stack.sql("SELECT refunded_fen FROM payments WHERE out_trade_no = %s", no)[0][0] == 30_000,
        timeout_s=30,
        what="both refunds to succeed",
    )
    states = stack.sql(
        "SELECT out_refund_no, state FROM payment_refunds WHERE out_trade_no = %s ORDER BY 1", no
    )
    assert [s for _, s in states] == ["success", "success"]
    wait_for(lambda: sum(e.startswith("refunded:") for e in stack.effects(no)) == 2, what="refund follow-ups")
    with psycopg.connect(stack.db_url) as conn:
        refund_jobs = [
            j for j in _queue.jobs_of(conn, _queue.REFUND) if j["args"]["out_refund_no"].endswith(no[-20:])
        ]
    assert len(refund_jobs) == 2
    order = httpx.get(f"{stack.gateway.base}/fake/orders/{no}").json()
    assert order["refunded_fen"] == 30_000 and order["trade_state"] == "REFUND"


def test_an_unpaid_order_past_its_expiry_is_closed(stack: Stack) -> None:
    no, _ = stack.start(amount_fen=4_200)
    with psycopg.connect(stack.db_url) as conn:  # as if its 15 minutes had passed
        conn.execute(
            "UPDATE payments SET expires_at = now() - interval '1 second', created_at = now() - interval '16 minutes'"
            " WHERE out_trade_no = %s",
            (no,),
        )
    with psycopg.connect(stack.db_url) as conn, conn.transaction():
        _queue.defer(conn, _queue.SWEEP)
    try:
        wait_for(lambda: stack.state(no) == "closed", what="the sweep to close the order")
    except AssertionError:
        print(_debug_dump(stack))
        raise
    assert "closed" in stack.effects(no)
    assert httpx.get(f"{stack.gateway.base}/fake/orders/{no}").json()["trade_state"] == "CLOSED"


def _debug_dump(stack: Stack) -> str:
    with psycopg.connect(stack.db_url) as conn:
        rows = conn.execute(
            "SELECT id, task_name, status, attempts, args FROM procrastinate_jobs ORDER BY id"
        ).fetchall()
    return "\n".join(map(str, rows)) + "\n" + (stack.worker.output()[-4000:] if stack.worker else "")


def test_an_unanswered_notification_is_retried_on_the_schedule_and_a_delayed_one_comes_late(
    stack: Stack,
) -> None:
    from payments._fake_gateway import RETRY_SCHEDULE_S

    # an order of this merchant that our database does not know: the API refuses its notification (404),
    # so the gateway redelivers it on WeChat's schedule (times the fake's time factor, 0.02)
    order, _ = _order_at_gateway_only(stack)
    assert stack.gateway.control("pay", **stack.client.request_payment_params(order.prepay_id))[0] == 200

    def attempts() -> list[dict[str, Any]]:
        found = [
            d
            for d in stack.gateway.get("notifications")
            if d["resource"].get("out_trade_no") == order.out_trade_no
        ]
        return found[0]["attempts"] if found else []

    wait_for(lambda: len(attempts()) >= 4, what="four delivery attempts")
    got = attempts()
    assert all(a["status"] == 404 for a in got)
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(got)][:3]
    for gap, scheduled in zip(gaps, RETRY_SCHEDULE_S, strict=False):
        assert scheduled * 0.02 <= gap < scheduled * 0.02 + 1.5

    stack.gateway.control("faults", fault="delay", delay_s=1.5)
    no, params = stack.start(amount_fen=3_300)
    paid_at = time.time()
    assert stack.gateway.control("pay", **params)[0] == 200
    asked = time.time()
    state = stack.state(no)
    if time.time() - paid_at < 1.2:  # asked well within the 1.5 s the notification is held back
        # not yet, unless the once-a-minute sweep happened to query the order in this window
        assert state == "created" or stack.paid_by(no) == ["payments-sweep"], (state, asked - paid_at)

    def delivered() -> list[dict[str, Any]]:
        found = [d for d in stack.gateway.get("notifications") if d["resource"].get("out_trade_no") == no]
        return found[0]["attempts"] if found else []

    wait_for(lambda: len(delivered()) >= 1, what="the delayed notification")
    first = next(d for d in stack.gateway.get("notifications") if d["resource"].get("out_trade_no") == no)
    assert first["fault"] == "delay" and first["attempts"][0]["at"] - paid_at >= 1.5
    wait_for(lambda: stack.state(no) == "paid", what="the order to be paid")
    assert stack.paid_by(no) in (["wechatpay"], ["payments-sweep"])  # once, by the notification or the sweep


def _order_at_gateway_only(stack: Stack) -> tuple[Any, str]:
    from payments import order_expiry, out_trade_no_for

    no = out_trade_no_for(uuid.uuid4().hex)
    order = stack.client.create_jsapi_order(
        out_trade_no=no,
        amount_fen=1_000,
        openid="o-x",
        expires_at=order_expiry(datetime.now(UTC), 900),
        station_id=1,
        station_name="站",
        goods="92号",
        client_ip="127.0.0.1",
    )
    return order, no
