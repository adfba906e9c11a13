"""A Hypothesis stateful model of paying sales over the real processes (fake gateway with its faults on,
link server, simulated site, API, worker): fill-ups, pay requests and double taps, the driver paying,
duplicated, delayed, reordered and dropped notifications, the cashier, orders left to expire. Whatever
the order, once things settle every sale is paid once and cleared by us (or refunded when the cashier
took it), or unpaid and not locked by us; the site saw at most one successful CLEAR per sale. Kept small
(a few examples of a few steps) so that `make test` stays fast."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, rule

from tests._payments import wait_for
from tests._sale_pay import PayStack

pytestmark = pytest.mark.slow

PUMPS = 3


def test_paying_sales_under_faults_settles_every_sale(stack: PayStack) -> None:
    class PayingSales(RuleBasedStateMachine):
        sales = Bundle("sales")

        def __init__(self) -> None:
            super().__init__()
            self.site = stack.site(pumps=PUMPS)
            self.unpaid = dict.fromkeys(range(1, PUMPS + 1), 0)
            self.orders: dict[int, dict[str, Any]] = {}  # sale id -> the last pay answer
            _, self.token = stack.user()

        @rule(target=sales, pump=st.integers(1, PUMPS), litres=st.sampled_from(["3", "7.5", "20"]))
        def fill_up(self, pump: int, litres: str) -> int:
            if self.unpaid[pump] >= 2:  # the pump's buffer is full: the cashier takes the oldest
                self.site.http.post(f"/pumps/{pump}/cashier")
                self.unpaid[pump] -= 1
            self.unpaid[pump] += 1
            return stack.fuel(self.site, pump, litres)

        @rule(sale=sales)
        def pay(self, sale: int) -> None:
            r = stack.pay(sale, self.token, str(uuid.uuid4()))
            assert r.status_code in (200, 409, 410), r.text
            if r.status_code == 200:
                before = self.orders.get(sale)
                if before is not None and stack.payment(before["out_trade_no"])["state"] == "created":
                    assert r.json()["out_trade_no"] == before["out_trade_no"]  # a double tap: one order
                self.orders[sale] = r.json()

        @rule(sale=sales)
        def driver_pays(self, sale: int) -> None:
            body = self.orders.get(sale)
            if body is not None:
                stack.wx_pay(body)  # refused by the gateway when closed or paid already: fine

        @rule(fault=st.sampled_from(["duplicate", "reorder", "drop", "delay"]))
        def gateway_fault(self, fault: str) -> None:
            stack.gateway.control("faults", fault=fault, count=1, delay_s=0.5)

        @rule(pump=st.integers(1, PUMPS))
        def cashier(self, pump: int) -> None:
            if self.site.http.post(f"/pumps/{pump}/cashier").status_code == 200:
                self.unpaid[pump] = max(0, self.unpaid[pump] - 1)

        def teardown(self) -> None:
            try:
                self.settle_and_check()
            finally:
                stack.gateway.control("reset-faults")
                stack.sites.remove(self.site)
                self.site.close()

        def settle_and_check(self) -> None:
            station = self.site.station
            stack.sql(  # every order still waiting expires now; the sweep queries, closes, unlocks
                "UPDATE payments SET expires_at = now() - interval '1 second',"
                " created_at = now() - interval '16 minutes' WHERE state = 'created' AND station_id = %s"
                " RETURNING 1",
                station,
            )
            stack.sweep()

            def settled() -> bool:
                rows = stack.sql(
                    "SELECT p.state, sp.site_state, p.refunded_fen, p.paid_fen FROM payments p"
                    " JOIN sale_payments sp USING (out_trade_no) WHERE p.station_id = %s",
                    station,
                )
                return all(
                    (state == "paid" and (site == "cleared" or (site == "paid_elsewhere" and ref == paid)))
                    or (state == "closed" and site == "unlocked")
                    for state, site, ref, paid in rows
                )

            wait_for(settled, timeout_s=60, what="every payment settled")
            for sale_id, n_paid in stack.sql(
                "SELECT sp.sale_id, count(*) FILTER (WHERE p.state = 'paid') FROM sale_payments sp"
                " JOIN payments p USING (out_trade_no) WHERE p.station_id = %s GROUP BY sp.sale_id",
                station,
            ):
                assert n_paid <= 1, f"sale {sale_id} paid {n_paid} times"
                sale = stack.sale(sale_id)
                if n_paid == 0:
                    wait_for(lambda s=sale_id: stack.sale(s)["state"] != "locked", what="unlocked")
                else:
                    wait_for(lambda s=sale_id: stack.sale(s)["state"] == "cleared", what="cleared")
                assert sale["review_reason"] is None
            clears = stack.commands(station, "CLEAR")
            ok_lines = [c[0] for c in clears if c[1]]
            assert len(ok_lines) == len(set(ok_lines))  # one successful CLEAR per sale

    PayingSales.TestCase.settings = settings(
        max_examples=3,
        stateful_step_count=8,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )
    PayingSales.TestCase().runTest()
