"""The simulated forecourt's model on its own (forecourt/_site.py) and the sale checks
(forecourt/_sales.py): IFSF states, the transaction buffer, totalisers, presets, cashier, offline sales."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from forecourt._sales import OPEN, SaleFigures, expected_amount_fen, merge, review_reason
from forecourt._site import (
    FP,
    TRANSITIONS,
    FpEvent,
    ProgressEvent,
    PumpEvent,
    SaleEvent,
    Site,
    SiteError,
    openfsc_status,
)

T0 = datetime(2026, 3, 4, 8, 0, tzinfo=UTC)
PRICES = {1: ("92", 765), 2: ("95", 818)}


def site(**kw: object) -> Site:
    return Site({1: dict(PRICES), 2: dict(PRICES)}, tx_prefix="X", **kw)  # type: ignore[arg-type]


def fill(s: Site, pump: int, ml: int, *, nozzle: int = 1, at: datetime = T0) -> list[object]:
    events: list[object] = []
    events += s.lift(pump, nozzle)
    events += s.fuel(pump, ml)
    for i in range(1, 200):
        events += s.tick(at + timedelta(seconds=i), 1.0)
    events += s.hang_up(pump, at + timedelta(seconds=200))
    return events


def test_transition_table_is_the_ifsf_one() -> None:
    assert TRANSITIONS["open"] == {FP.CLOSED: FP.IDLE}
    assert set(TRANSITIONS["close"]) == set(FP) - {FP.INOPERATIVE, FP.CLOSED}
    assert set(TRANSITIONS["authorise"]) == {FP.IDLE, FP.CALLING}
    assert set(TRANSITIONS["terminate"]) == set(FP) - {FP.INOPERATIVE, FP.CLOSED, FP.IDLE}
    assert set(TRANSITIONS["suspend"]) == {FP.STARTED, FP.FUELLING}
    assert set(TRANSITIONS["resume"]) == {FP.SUSPENDED_STARTED, FP.SUSPENDED_FUELLING}
    assert [openfsc_status(s) for s in FP] == ["out-of-order"] * 2 + ["free"] + ["in-use"] * 6
    assert openfsc_status(FP.IDLE, unpaid=True) == "ready-to-pay"


def test_a_fuelling_goes_through_the_states_and_becomes_a_payable_sale() -> None:
    s = site()
    ev = s.lift(1, 1)
    assert [e.state for e in ev if isinstance(e, FpEvent)] == [FP.CALLING, FP.AUTHORISED]
    assert PumpEvent(1, "in-use") in ev
    assert [e.state for e in s.fuel(1, 40_000) if isinstance(e, FpEvent)] == [FP.STARTED]
    ev = s.tick(T0, 1.0)
    assert s.points[1].state == FP.FUELLING
    assert [(e.seq, e.volume_ml, e.amount_fen) for e in ev if isinstance(e, ProgressEvent)] == [(1, 500, 383)]
    assert s.tick(T0 + timedelta(seconds=0.5), 0.5) == []  # progress about once a second
    start = s.points[1].nozzles[1].total_ml
    for i in range(1, 100):
        s.tick(T0 + timedelta(seconds=i), 1.0)
    assert s.points[1].fuelling is not None and s.points[1].fuelling.volume_ml == 40_000
    ev = s.hang_up(1, T0 + timedelta(seconds=100))
    sale = next(e.sale for e in ev if isinstance(e, SaleEvent))
    assert (sale.volume_ml, sale.amount_fen, sale.price_fen, sale.state) == (40_000, 30_600, 765, "payable")
    assert sale.totaliser_end_ml - sale.totaliser_start_ml == 40_000 and sale.totaliser_start_ml == start
    noz = s.points[1].nozzles[1]
    assert (noz.total_ml, noz.total_fen, noz.count) == (start + 40_000, 30_600, 1)
    assert s.points[1].state == FP.IDLE and s.status(1) == "ready-to-pay"
    progress = [e for e in ev if isinstance(e, ProgressEvent)]
    assert progress and progress[-1].volume_ml == 40_000  # the final figures are reported


def test_presets_stop_the_flow_by_volume_or_amount() -> None:
    s = site()
    s.authorise(1, preset_ml=10_000)
    s.lift(1, 1)
    s.fuel(1, 50_000)
    for i in range(60):
        s.tick(T0 + timedelta(seconds=i), 1.0)
    assert s.points[1].fuelling is not None and s.points[1].fuelling.volume_ml == 10_000
    s.hang_up(1, T0 + timedelta(seconds=61))
    s.authorise(2, preset_fen=20_000)  # 200 CNY of 95# at 8.18
    s.lift(2, 2)
    s.fuel(2, 50_000)
    for i in range(120):
        s.tick(T0 + timedelta(seconds=i), 1.0)
    f = s.points[2].fuelling
    assert f is not None and f.amount_fen <= 20_000 and f.amount_fen > 20_000 - 9
    assert f.amount_fen == expected_amount_fen(818, f.volume_ml)


def test_the_unpaid_cap_refuses_authorisation() -> None:
    s = site()
    fill(s, 1, 1_000)
    fill(s, 1, 1_000)
    ev = s.lift(1, 1)  # Calling, never Authorised
    assert s.points[1].state == FP.CALLING and FpEvent(1, FP.AUTHORISED) not in ev
    with pytest.raises(SiteError) as exc:
        s.authorise(1)
    assert exc.value.code == 412
    with pytest.raises(SiteError):
        s.fuel(1, 1_000)
    s.hang_up(1, T0)
    s.pay_at_cashier(1)
    s.lift(1, 1)
    assert s.points[1].state == FP.AUTHORISED


def test_lock_clear_and_the_cashier_answer_as_the_protocol_says() -> None:
    s = site()
    fill(s, 1, 2_000)
    tx = s.open_sales(1)[0].site_tx_id
    a, b = "e2f74ef5-f427-4ae6-bdd3-70a96709992f", "70644955-ef32-4d33-a88b-67b500a7c00d"
    assert s.lock(1, tx, a)[0].sale.state == "locked"  # type: ignore[union-attr]
    s.lock(1, tx, a)  # again: no change
    for op, code in (
        (lambda: s.lock(1, tx, b), 409),
        (lambda: s.pay_at_cashier(1, tx), 409),
        (lambda: s.clear(1, tx, b), 409),
    ):
        with pytest.raises(SiteError) as exc:
            op()
        assert exc.value.code == code
    s.clear(1, tx, a)
    with pytest.raises(SiteError) as exc:
        s.clear(1, tx, a)
    assert exc.value.code == 410  # a retried CLEAR: it was applied
    with pytest.raises(SiteError) as exc:
        s.clear(1, "nope", a)
    assert exc.value.code == 404
    fill(s, 1, 2_000)
    tx2 = s.open_sales(1)[0].site_tx_id
    s.pay_at_cashier(1)
    with pytest.raises(SiteError) as exc:
        s.clear(1, tx2, a)
    assert exc.value.code == 403  # paid another way
    with pytest.raises(SiteError) as exc:
        s.lock(1, tx2, a)
    assert exc.value.code == 410


def test_offline_sales_are_written_cleared_and_reconcile_returns_them() -> None:
    s = site()
    fill(s, 1, 1_000, at=T0)
    s.online = False
    ev = fill(s, 2, 3_000, at=T0 + timedelta(minutes=5))
    sale = next(e.sale for e in ev if isinstance(e, SaleEvent))
    assert (sale.state, sale.offline, sale.cleared_by) == ("cleared", True, "cashier")
    assert [x.site_tx_id for x in s.sales_since(T0 + timedelta(minutes=4))] == [sale.site_tx_id]
    assert len(s.sales_since(None)) == 2


def test_suspend_resume_close_open() -> None:
    s = site()
    s.lift(1, 1)
    s.fuel(1, 5_000)
    s.tick(T0, 1.0)
    s.suspend(1)
    assert s.points[1].state == FP.SUSPENDED_FUELLING
    assert [e for e in s.tick(T0 + timedelta(seconds=2), 1.0) if isinstance(e, ProgressEvent)] == []
    s.resume(1)
    s.hang_up(1, T0 + timedelta(seconds=3))
    s.close(2)
    assert s.status(2) == "out-of-order"
    with pytest.raises(SiteError):
        s.lift(2, 1)
    s.open(2)
    assert s.status(2) == "free"


def test_sale_checks() -> None:
    ok = SaleFigures(1, "T1", "92", 40_000, 30_600, 765, "payable", 1, 1_000_000, 1_040_000)
    assert review_reason(ok) is None
    assert (
        review_reason(SaleFigures(1, "T1", "92", 40_000, 30_601, 765, "payable", 1, 1_000_000, 1_040_000))
        is None
    )
    assert "amount" in (
        review_reason(SaleFigures(1, "T1", "92", 40_000, 30_602, 765, "payable", 1, 1_000_000, 1_040_000))
        or ""
    )
    # the Chengdu fault: the previous sale's 27.18 L added to the next bill
    bad = SaleFigures(1, "T1", "92", 67_960, 51_989, 765, "payable", 1, 1_000_000, 1_040_780)
    assert "totaliser delta" in (review_reason(bad) or "")
    assert "no totaliser" in (review_reason(SaleFigures(1, "T1", "92", 40_000, 30_600, 765, "payable")) or "")
    # figures are written once; a different report goes to review and changes nothing
    merged, reason = merge(
        ok, None, SaleFigures(1, "T1", "92", 67_960, 51_989, 765, "payable", 1, 1_000_000, 1_067_960)
    )
    assert merged.volume_ml == 40_000 and reason is not None and reason.startswith("site reported")
    merged2, reason2 = merge(
        merged, reason, SaleFigures(1, "T1", "92", 40_000, 30_600, 765, "locked", 1, 1_000_000, 1_040_000)
    )
    assert reason2 == reason and merged2.state == "locked"
    # totalisers fill in; a cleared sale stays cleared
    core = SaleFigures(1, "T2", "92", 40_000, 30_600, 765, "payable")
    filled, why = merge(
        core, review_reason(core), SaleFigures(1, "T2", "92", 40_000, 30_600, 765, "cleared", 1, 5, 40_005)
    )
    assert why is None and filled.state == "cleared"
    again, _ = merge(filled, None, core)
    assert again.state == "cleared"
    # a core TRANSACTION ("open": unpaid) never moves the state of a stored sale
    locked = SaleFigures(1, "T3", "92", 40_000, 30_600, 765, "locked", 1, 5, 40_005)
    assert merge(locked, None, SaleFigures(1, "T3", "92", 40_000, 30_600, 765, OPEN))[0].state == "locked"
    assert merge(None, None, SaleFigures(1, "T4", "92", 40_000, 30_600, 765, OPEN))[0].state == "payable"


class SiteMachine(RuleBasedStateMachine):
    """Any sequence of driver, cashier, payment and link actions keeps the site's invariants."""

    def __init__(self) -> None:
        super().__init__()
        self.site = site()
        self.now = T0
        self.totals = {
            (p, n): noz.total_ml for p, fp in self.site.points.items() for n, noz in fp.nozzles.items()
        }
        self.seqs: dict[str, int] = {}
        self.sales: dict[str, int] = {}

    def _apply(self, events: list[object]) -> None:
        for e in events:
            if isinstance(e, ProgressEvent):
                assert e.seq > self.seqs.get(e.site_tx_id, 0)
                self.seqs[e.site_tx_id] = e.seq
            if isinstance(e, SaleEvent):
                prev = self.sales.setdefault(e.sale.site_tx_id, e.sale.volume_ml)
                assert prev == e.sale.volume_ml

    def _try(self, fn: object) -> None:
        try:
            self._apply(fn())  # type: ignore[operator]
        except SiteError as exc:
            assert 400 <= exc.code < 500

    @rule(pump=st.sampled_from([1, 2]), nozzle=st.sampled_from([1, 2]))
    def lift(self, pump: int, nozzle: int) -> None:
        self._try(lambda: self.site.lift(pump, nozzle))

    @rule(pump=st.sampled_from([1, 2]), ml=st.integers(1, 60_000))
    def fuel(self, pump: int, ml: int) -> None:
        self._try(lambda: self.site.fuel(pump, ml))

    @rule(dt=st.floats(0.1, 30))
    def tick(self, dt: float) -> None:
        self.now += timedelta(seconds=dt)
        self._apply(self.site.tick(self.now, dt))

    @rule(pump=st.sampled_from([1, 2]))
    def hang_up(self, pump: int) -> None:
        self._try(lambda: self.site.hang_up(pump, self.now))

    @rule(pump=st.sampled_from([1, 2]))
    def cashier(self, pump: int) -> None:
        self._try(lambda: self.site.pay_at_cashier(pump))

    @precondition(lambda self: bool(self.site.open_sales()))
    @rule(
        data=st.data(),
        payer=st.sampled_from(
            ["e2f74ef5-f427-4ae6-bdd3-70a96709992f", "70644955-ef32-4d33-a88b-67b500a7c00d"]
        ),
        op=st.sampled_from(["lock", "unlock", "clear"]),
    )
    def mobile(self, data: st.DataObject, payer: str, op: str) -> None:
        sale = data.draw(st.sampled_from(self.site.open_sales()))
        self._try(lambda: getattr(self.site, op)(sale.pump, sale.site_tx_id, payer))

    @rule(online=st.booleans())
    def link(self, online: bool) -> None:
        self.site.online = online

    @invariant()
    def totalisers_are_monotonic_and_match_the_sales(self) -> None:
        for p, fp in self.site.points.items():
            for n, noz in fp.nozzles.items():
                assert noz.total_ml >= self.totals[(p, n)]
                self.totals[(p, n)] = noz.total_ml
            for s in fp.buffer:
                assert s.totaliser_end_ml - s.totaliser_start_ml == s.volume_ml > 0
                assert s.amount_fen == expected_amount_fen(s.price_fen, s.volume_ml)
                assert s.state in ("payable", "locked", "cleared")
                assert (s.state == "locked") == (s.locked_by is not None) or s.state == "cleared"
            assert len(fp.unpaid()) <= self.site.unpaid_cap
            assert (fp.fuelling is not None) <= (
                fp.state in (FP.STARTED, FP.SUSPENDED_STARTED, FP.FUELLING, FP.SUSPENDED_FUELLING)
            )


TestSiteMachine = SiteMachine.TestCase
TestSiteMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
