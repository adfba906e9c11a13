"""The fuelling session's state machine (fuelling/_session.py), pure: every (state, event kind) pair against
the transition table, the post-pay and preset flows, the side exits, and a Hypothesis stateful test that
drives random event sequences and checks the invariants after every step."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from fuelling import (
    AMOUNT_FINAL,
    TERMINAL,
    TRANSITIONS,
    Cancel,
    Event,
    InvalidTransition,
    Kind,
    LockResult,
    OutOfOrder,
    Paid,
    Progress,
    PumpStatus,
    Sale,
    SaleInfo,
    Session,
    SessionClosed,
    State,
    Timeout,
    Unlocked,
    apply,
    classify,
    new_session,
)
from geo._errors import InvalidInput

PRICE = 812  # fen per litre


def sale_for(volume_ml: int, *, tx: str = "T1", start: int = 1_000_000, **kw: object) -> Sale:
    """A consistent payable sale of `volume_ml` at PRICE."""
    fields: dict[str, object] = {
        "site_tx_id": tx,
        "volume_ml": volume_ml,
        "amount_fen": (PRICE * volume_ml + 500) // 1000,
        "unit_price_fen": PRICE,
        "totaliser_start_ml": start,
        "totaliser_end_ml": start + volume_ml,
    }
    fields.update(kw)
    return Sale(**fields)  # type: ignore[arg-type]


def run(session: Session, *events: Event) -> Session:
    for e in events:
        session = apply(session, e).session
    return session


# ---- the table, pair by pair -------------------------------------------------------------------------

SALE = sale_for(30_000)
INFO = SaleInfo("T1", 30_000, SALE.amount_fen, PRICE, 1_000_000, 1_030_000)


def session_in(state: State) -> Session:
    """A session in `state`; from completed on (and in the exits) it holds the sale T1."""
    has_sale = state in (State.COMPLETED, State.LOCKED, State.PAID, State.TAKEN_BY_CASHIER, State.REVIEW)
    return Session(
        state=state,
        last_seq=3,
        volume_ml=30_000 if has_sale else 10_000,
        amount_fen=SALE.amount_fen if has_sale else 8_120,
        sale=INFO if has_sale else None,
    )


def event_of(kind: Kind, session: Session) -> Event | None:
    """An event that means `kind` to `session`, or None when there is none (e.g. a repeat without a sale)."""
    with_sale = session.sale is not None
    return {
        Kind.HUNG_UP: PumpStatus("free"),
        Kind.LIFTED: PumpStatus("in-use", 4),
        Kind.AUTHORISED: PumpStatus("in-use", 5),
        Kind.FLOWING: PumpStatus("in-transaction", 8),
        Kind.READY_TO_PAY: PumpStatus("ready-to-pay"),
        Kind.OUT_OF_ORDER: PumpStatus("out-of-order"),
        Kind.PROGRESS: Progress(session.last_seq + 1, session.volume_ml + 500, session.amount_fen + 406),
        Kind.SALE_PAYABLE: None if with_sale else SALE,
        Kind.SALE_MISMATCH: replace(SALE, totaliser_end_ml=SALE.totaliser_end_ml + 27_180),
        Kind.SALE_TAKEN: replace(SALE, state="cleared"),
        Kind.SALE_REPEATED: SALE if with_sale else None,
        Kind.LOCK_OK: LockResult("T1", "ok") if with_sale else None,
        Kind.LOCK_REFUSED: LockResult("T1", "locked_elsewhere") if with_sale else None,
        Kind.UNLOCKED: Unlocked("T1") if with_sale else None,
        Kind.PAID: Paid("T1") if with_sale else None,
        Kind.TIMEOUT: Timeout(),
        Kind.CANCEL: Cancel(),
    }[kind]


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("kind", list(Kind))
def test_every_pair_follows_the_table(state: State, kind: Kind) -> None:
    session = session_in(state)
    event = event_of(kind, session)
    if event is None:
        return  # this kind cannot happen to a session in this state (checked below for the table)
    if state in TERMINAL:
        with pytest.raises(SessionClosed):
            apply(session, event)
        return
    assert classify(session, event) == kind
    target = TRANSITIONS.get((state, kind))
    if target is None:
        with pytest.raises(InvalidTransition) as err:
            apply(session, event)
        assert err.value.state == state and err.value.kind == kind
        return
    t = apply(session, event)
    assert (t.before, t.kind, t.after) == (state, kind, target)
    assert t.session.version == session.version + 1


def test_the_table_is_closed_and_terminal_states_have_no_way_out() -> None:
    assert {s for s, _ in TRANSITIONS} <= set(State) - TERMINAL
    assert {t for t in TRANSITIONS.values()} <= set(State)
    # sale-bound kinds only where a sale can exist
    for state, kind in TRANSITIONS:
        if kind in (Kind.LOCK_OK, Kind.LOCK_REFUSED, Kind.UNLOCKED, Kind.PAID, Kind.SALE_REPEATED):
            assert state in (State.COMPLETED, State.LOCKED), (state, kind)
    # every state is reachable from bound
    seen, todo = {State.BOUND}, [State.BOUND]
    while todo:
        s = todo.pop()
        for (a, _), b in TRANSITIONS.items():
            if a == s and b not in seen:
                seen.add(b)
                todo.append(b)
    assert seen == set(State)


# ---- flows ----------------------------------------------------------------------------------------------


def test_post_pay_lift_fuel_then_pay() -> None:
    s = new_session()
    s = run(s, PumpStatus("in-use", 4), PumpStatus("in-use", 5), PumpStatus("in-transaction", 6))
    assert s.state == State.FUELLING
    for seq in range(1, 6):
        s = apply(s, Progress(seq, seq * 6_000, (PRICE * seq * 6_000 + 500) // 1000)).session
        assert s.state == State.FUELLING and not s.amount_final and s.final_amount_fen is None
    s = apply(s, PumpStatus("free", 3)).session
    t = apply(s, SALE)
    assert t.after == State.COMPLETED and t.effects == ("lock_sale",)
    assert t.session.final_amount_fen == SALE.amount_fen == 24_360
    s = run(t.session, SALE, LockResult("T1", "ok"))  # a retransmitted sale changes nothing
    assert s.state == State.LOCKED and s.final_amount_fen == 24_360
    s = run(s, Unlocked("T1"))
    assert s.state == State.COMPLETED  # payment abandoned: payable again, no second lock effect
    s = run(s, LockResult("T1", "ok"), Paid("T1"))
    assert s.state == State.PAID and s.terminal and s.final_amount_fen == 24_360
    with pytest.raises(SessionClosed):
        apply(s, Cancel())


def test_preset_amount_caps_the_sale() -> None:
    s = new_session(preset_amount_fen=20_000)
    assert s.mode == "preset"
    s = run(s, PumpStatus("in-use", 5), Progress(1, 12_000, 9_744))
    over = sale_for(30_000)  # 243.60 CNY > 200.00 preset
    t = apply(s, over)
    assert t.after == State.REVIEW and t.effects == ("flag_review",)
    assert "above the preset" in (t.session.review_reason or "")
    assert t.session.final_amount_fen is None
    within = sale_for(24_630)  # 200.00 CNY (rounded) at 8.12
    assert within.amount_fen == 20_000
    assert apply(s, within).after == State.COMPLETED
    for bad in (0, 99, 500_001, True):
        with pytest.raises(InvalidInput):
            new_session(preset_amount_fen=bad)  # type: ignore[arg-type]


def test_side_exits() -> None:
    assert run(new_session(), Timeout()).state == State.EXPIRED
    assert run(new_session(), PumpStatus("in-use", 4), Cancel()).state == State.CANCELLED
    fuelling = run(new_session(), Progress(1, 1_000, 812))
    with pytest.raises(InvalidTransition):
        apply(fuelling, Cancel())  # fuel is flowing
    with pytest.raises(InvalidTransition):
        apply(fuelling, Timeout())
    assert run(fuelling, replace(sale_for(5_000), state="cleared")).state == State.TAKEN_BY_CASHIER
    assert run(fuelling, sale_for(5_000, offline=True)).state == State.TAKEN_BY_CASHIER
    done = run(fuelling, sale_for(5_000))
    assert run(done, LockResult("T1", "cleared")).state == State.TAKEN_BY_CASHIER
    assert run(done, LockResult("T1", "locked_elsewhere")).state == State.TAKEN_BY_CASHIER
    assert run(done, replace(sale_for(5_000), state="cleared")).state == State.TAKEN_BY_CASHIER
    assert run(done, Cancel()).state == State.CANCELLED  # pays at the cashier: the sale stays payable
    # back to bound when the nozzle goes back without fuel
    assert run(new_session(), PumpStatus("in-use", 4), PumpStatus("free", 3)).state == State.BOUND


def test_amounts_that_do_not_add_up_go_to_review_never_to_payment() -> None:
    fuelling = run(new_session(), Progress(1, 20_000, 16_240))
    chengdu = sale_for(67_960, start=1_000_000, totaliser_end_ml=1_040_780)  # 27.18 L added to 40.78 L
    cases = {
        "totaliser delta": chengdu,
        "unit price x volume": sale_for(30_000, amount_fen=24_362),
        "no volume": sale_for(0),
        "less than shown live": sale_for(10_000),
    }
    for what, sale in cases.items():
        t = apply(fuelling, sale)
        assert t.after == State.REVIEW, what
        assert t.session.final_amount_fen is None and t.session.review_reason, what
    assert apply(fuelling, sale_for(30_000, amount_fen=24_361)).after == State.COMPLETED  # within 1 fen
    done = run(fuelling, sale_for(30_000))
    assert run(done, sale_for(30_000, amount_fen=24_000)).state == State.REVIEW  # reported again, changed
    with pytest.raises(InvalidTransition):
        apply(done, sale_for(30_000, tx="T2"))  # another sale: not this session's


def test_a_sale_the_station_link_refused_goes_to_review_with_the_link_s_reason() -> None:
    """The link's own verdict (forecourt._sales.review_reason: no totalisers, figures reported twice with
    other values) wins even when the figures the session sees add up."""
    fuelling = run(new_session(), Progress(1, 20_000, 16_240))
    reason = "site reported different figures for sale T1"
    t = apply(fuelling, sale_for(30_000, review_reason=reason))
    assert (t.after, t.session.review_reason, t.effects) == (State.REVIEW, reason, ("flag_review",))
    assert t.session.final_amount_fen is None
    assert apply(fuelling, sale_for(30_000, review_reason=None)).after == State.COMPLETED


def test_a_sale_while_bound_is_never_taken() -> None:
    """The previous customer's unpaid sale must not land on a phone that has not seen the nozzle lifted."""
    with pytest.raises(InvalidTransition):
        apply(new_session(), sale_for(27_180))


def test_out_of_order_progress_is_refused_and_changes_nothing() -> None:
    s = run(new_session(), Progress(1, 1_000, 812), Progress(2, 2_000, 1_624))
    for bad in (Progress(2, 3_000, 2_436), Progress(1, 3_000, 2_436), Progress(3, 1_500, 1_218)):
        with pytest.raises(OutOfOrder):
            apply(s, bad)
    assert (s.last_seq, s.volume_ml, s.version) == (2, 2_000, 2)
    assert apply(s, Progress(7, 3_000, 2_436)).session.last_seq == 7  # gaps are fine, order is not
    for bad_input in (Progress(0, 0, 0), PumpStatus("in-use", 10), PumpStatus("busy")):  # type: ignore[arg-type]
        with pytest.raises(InvalidInput):
            apply(s, bad_input)


# ---- random sequences -----------------------------------------------------------------------------------

TX_IDS = st.sampled_from(["T1", "T2"])


class SessionMachine(RuleBasedStateMachine):
    """Random events, realistic and not; after each one the invariants hold, and a refused event changed
    nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.session = new_session()
        self.ever_terminal: State | None = None
        self.max_seq = 0
        self.accepted = 0

    @initialize(preset=st.none() | st.integers(100, 50_000))
    def start(self, preset: int | None) -> None:
        self.session = new_session(preset_amount_fen=preset)

    def step(self, event: Event) -> None:
        before = self.session
        try:
            t = apply(before, event)
        except (InvalidTransition, InvalidInput) as exc:
            if isinstance(exc, InvalidTransition) and not isinstance(exc, SessionClosed | OutOfOrder):
                assert exc.kind is None or (before.state, exc.kind) not in TRANSITIONS
            if before.terminal:
                assert isinstance(exc, SessionClosed)
            assert self.session is before  # nothing changed
            return
        assert not before.terminal
        assert TRANSITIONS[(before.state, t.kind)] == t.after
        assert t.session.version == before.version + 1
        self.accepted += 1
        self.session = t.session

    @rule(
        status=st.sampled_from(
            ["free", "in-use", "in-transaction", "ready-to-pay", "locked", "out-of-order"]
        ),
        fp=st.none() | st.integers(0, 10),
    )
    def status(self, status: str, fp: int | None) -> None:
        self.step(PumpStatus(status, fp))  # type: ignore[arg-type]

    @rule(dseq=st.integers(-2, 3), dvol=st.integers(-500, 3_000))
    def progress(self, dseq: int, dvol: int) -> None:
        s = self.session
        vol = max(0, s.volume_ml + dvol)
        self.step(Progress(s.last_seq + dseq, vol, (PRICE * vol + 500) // 1000))

    @rule(
        extra_ml=st.integers(0, 2_000),
        tx=TX_IDS,
        state=st.sampled_from(["payable", "payable", "cleared", "locked"]),
        offline=st.booleans(),
        skew_ml=st.sampled_from([0, 0, 0, 27_180]),
        skew_fen=st.sampled_from([0, 0, 1, -1, 5]),
    )
    def sale(self, extra_ml: int, tx: str, state: str, offline: bool, skew_ml: int, skew_fen: int) -> None:
        vol = self.session.volume_ml + extra_ml
        sale = sale_for(vol, tx=tx, state=state, offline=offline)
        self.step(
            replace(
                sale, totaliser_end_ml=sale.totaliser_end_ml + skew_ml, amount_fen=sale.amount_fen + skew_fen
            )
        )

    @rule(tx=TX_IDS, outcome=st.sampled_from(["ok", "ok", "locked_elsewhere", "cleared"]))
    def lock(self, tx: str, outcome: str) -> None:
        self.step(LockResult(tx, outcome))  # type: ignore[arg-type]

    @rule(tx=TX_IDS)
    def unlock(self, tx: str) -> None:
        self.step(Unlocked(tx))

    @rule(tx=TX_IDS)
    def paid(self, tx: str) -> None:
        self.step(Paid(tx))

    # the exits end a sequence: drawn rarely, so that most sequences get somewhere first
    @rule(roll=st.integers(0, 9))
    def timeout(self, roll: int) -> None:
        if roll == 0:
            self.step(Timeout())

    @rule(roll=st.integers(0, 9))
    def cancel(self, roll: int) -> None:
        if roll == 0:
            self.step(Cancel())

    @precondition(lambda self: self.session.state == State.COMPLETED and self.session.sale is not None)
    @rule()
    def pay_the_sale(self) -> None:
        """Drive to the end of the happy path now and then."""
        assert self.session.sale is not None
        self.step(LockResult(self.session.sale.site_tx_id, "ok"))
        self.step(Paid(self.session.sale.site_tx_id))

    @invariant()
    def terminal_states_stay_terminal(self) -> None:
        if self.ever_terminal is not None:
            assert self.session.state == self.ever_terminal
        if self.session.terminal:
            self.ever_terminal = self.session.state

    @invariant()
    def sequence_numbers_never_go_backwards(self) -> None:
        assert self.session.last_seq >= self.max_seq
        self.max_seq = self.session.last_seq
        assert self.session.version == self.accepted

    @invariant()
    def amount_final_only_in_completed_locked_paid(self) -> None:
        s = self.session
        assert s.amount_final == (s.state in AMOUNT_FINAL)
        if s.final_amount_fen is not None:
            assert s.state in AMOUNT_FINAL and s.sale is not None
            assert s.sale.totaliser_end_ml - s.sale.totaliser_start_ml == s.sale.volume_ml > 0
            assert abs(s.sale.amount_fen - (s.sale.unit_price_fen * s.sale.volume_ml + 500) // 1000) <= 1
            if s.preset_amount_fen is not None:
                assert s.final_amount_fen <= s.preset_amount_fen + 1
        if s.state in AMOUNT_FINAL:
            assert s.final_amount_fen is not None
        if s.state == State.REVIEW:
            assert s.review_reason


TestSessionMachine = SessionMachine.TestCase
TestSessionMachine.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
