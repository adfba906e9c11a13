"""A station's forecourt as its controller sees it (pure: no I/O, no clock; `now` is passed in).

Fuelling points follow the IFSF fuelling-point states (IFSF Part 3-01): 1 Inoperative, 2 Closed, 3 Idle,
4 Calling (nozzle up, not authorised), 5 Authorised, 6 Started, 7 Suspended Started, 8 Fuelling,
9 Suspended Fuelling, with the explicit transition table `TRANSITIONS`. Each pump keeps a transaction
buffer (Payable, Locked, Cleared) and refuses to authorise while it holds `unpaid_cap` unpaid sales.
Each logical nozzle has monotonic totalisers (volume in ml, amount in fen, sale count); a sale's volume
is the volume totaliser's delta. While the host link is down, finished sales are written as Cleared with
the offline flag (the cashier takes them), and the site answers RECONCILE with them later.

Every operation returns the events the site would report (`PumpEvent`, `FpEvent`, `ProgressEvent`,
`SaleEvent`); the simulator turns them into OpenFSC lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import IntEnum

from forecourt._sales import expected_amount_fen


class FP(IntEnum):
    INOPERATIVE = 1
    CLOSED = 2
    IDLE = 3
    CALLING = 4
    AUTHORISED = 5
    STARTED = 6
    SUSPENDED_STARTED = 7
    FUELLING = 8
    SUSPENDED_FUELLING = 9


# IFSF commands and events -> the states that accept them and where they lead (state -> next state).
# Open_FP (2), Close_FP (3-9), Release_FP/authorise (3-4), Terminate_FP (4-9), Suspend_FP (6, 8),
# Resume_FP (7, 9); nozzle up (3 -> 4, 5 stays 5: authorised before the lift), first flow (5 -> 6 ->
# 8), nozzle down (4-9 -> 3), fault (any -> 1), repaired (1 -> 2).
_BUSY = (FP.CALLING, FP.AUTHORISED, FP.STARTED, FP.SUSPENDED_STARTED, FP.FUELLING, FP.SUSPENDED_FUELLING)
TRANSITIONS: dict[str, dict[FP, FP]] = {
    "open": {FP.CLOSED: FP.IDLE},
    "close": {s: FP.CLOSED for s in (FP.IDLE, *_BUSY)},
    "authorise": {FP.IDLE: FP.AUTHORISED, FP.CALLING: FP.AUTHORISED},
    "lift": {FP.IDLE: FP.CALLING, FP.AUTHORISED: FP.AUTHORISED},
    "start": {FP.AUTHORISED: FP.STARTED},
    "flow": {FP.STARTED: FP.FUELLING, FP.FUELLING: FP.FUELLING},
    "suspend": {FP.STARTED: FP.SUSPENDED_STARTED, FP.FUELLING: FP.SUSPENDED_FUELLING},
    "resume": {FP.SUSPENDED_STARTED: FP.STARTED, FP.SUSPENDED_FUELLING: FP.FUELLING},
    "terminate": {s: FP.IDLE for s in _BUSY},
    "hang_up": {s: FP.IDLE for s in _BUSY},
    "fail": {s: FP.INOPERATIVE for s in FP},
    "repair": {FP.INOPERATIVE: FP.CLOSED},
}


def openfsc_status(fp_state: int, *, unpaid: bool = False) -> str:
    """The OpenFSC pump status of an IFSF state: out-of-order (1, 2), free or ready-to-pay (3, with an
    unpaid sale in the buffer), in-use (4-9)."""
    if fp_state in (FP.INOPERATIVE, FP.CLOSED):
        return "out-of-order"
    if fp_state == FP.IDLE:
        return "ready-to-pay" if unpaid else "free"
    return "in-use"


class SiteError(Exception):
    """An operation the site refuses; `code` is the OpenFSC error code it answers with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Nozzle:
    number: int
    grade: str
    price_fen: int  # per litre
    total_ml: int = 0
    total_fen: int = 0
    count: int = 0


@dataclass(frozen=True)
class BufferedSale:
    site_tx_id: str
    pump: int
    nozzle: int
    grade: str
    volume_ml: int
    amount_fen: int
    price_fen: int
    totaliser_start_ml: int
    totaliser_end_ml: int
    ended_at: datetime
    state: str = "payable"  # payable | locked | cleared
    offline: bool = False
    cleared_by: str | None = None  # "cashier" or the FSCTransactionID that paid it
    locked_by: str | None = None


@dataclass
class Fuelling:
    site_tx_id: str
    nozzle: int
    start_total_ml: int
    preset_ml: int | None = None
    preset_fen: int | None = None
    volume_ml: int = 0
    amount_fen: int = 0
    seq: int = 0
    to_dispense_ml: int = 0  # what the driver still squeezes for (the "fuel N litres" control)
    last_progress: datetime | None = None


@dataclass
class FuellingPoint:
    number: int
    nozzles: dict[int, Nozzle]
    flow_ml_per_s: int = 500  # 30 L/min, a car nozzle
    state: FP = FP.IDLE
    lifted: int | None = None
    fuelling: Fuelling | None = None
    preset_ml: int | None = None
    preset_fen: int | None = None
    buffer: list[BufferedSale] = field(default_factory=list)

    def unpaid(self) -> list[BufferedSale]:
        return [s for s in self.buffer if s.state != "cleared"]


# --- events ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PumpEvent:
    pump: int
    status: str


@dataclass(frozen=True)
class FpEvent:
    pump: int
    state: int


@dataclass(frozen=True)
class ProgressEvent:
    pump: int
    nozzle: int
    site_tx_id: str
    grade: str
    seq: int
    volume_ml: int
    amount_fen: int


@dataclass(frozen=True)
class SaleEvent:
    sale: BufferedSale


Event = PumpEvent | FpEvent | ProgressEvent | SaleEvent


class Site:
    """One forecourt. `tx_prefix` makes transaction ids unique across restarts of a simulated site."""

    def __init__(
        self,
        pumps: dict[int, dict[int, tuple[str, int]]],
        *,
        tx_prefix: str = "T",
        unpaid_cap: int = 2,
        flow_ml_per_s: int = 500,
        progress_interval_s: float = 1.0,
        keep_cleared: int = 50,
        auto_authorise: bool = True,
        totaliser_start_ml: int = 0,
    ) -> None:
        """`pumps`: pump number -> nozzle number -> (grade, unit price in fen per litre)."""
        self.points: dict[int, FuellingPoint] = {
            p: FuellingPoint(
                p,
                {
                    n: Nozzle(n, grade, price, total_ml=totaliser_start_ml + 1_000 * p + n)
                    for n, (grade, price) in sorted(nozzles.items())
                },
                flow_ml_per_s=flow_ml_per_s,
            )
            for p, nozzles in sorted(pumps.items())
        }
        self.tx_prefix = tx_prefix
        self.unpaid_cap = unpaid_cap
        self.progress_interval_s = progress_interval_s
        self.keep_cleared = keep_cleared
        self.auto_authorise = auto_authorise
        self.online = True
        self._tx = 0

    # --- helpers ----------------------------------------------------------------------------------
    def point(self, pump: int) -> FuellingPoint:
        fp = self.points.get(pump)
        if fp is None:
            raise SiteError(404, f"pump {pump} unknown")
        return fp

    def status(self, pump: int) -> str:
        fp = self.point(pump)
        return openfsc_status(fp.state, unpaid=bool(fp.unpaid()))

    def prices(self) -> dict[str, int]:
        return {n.grade: n.price_fen for fp in self.points.values() for n in fp.nozzles.values()}

    def set_price(self, grade: str, price_fen: int) -> list[Event]:
        """A new unit price for `grade` on every nozzle that sells it (fuellings after this use it)."""
        nozzles = [n for fp in self.points.values() for n in fp.nozzles.values() if n.grade == grade]
        if not nozzles:
            raise SiteError(404, f"grade {grade} not sold here")
        if not 1 <= price_fen <= 100_000:
            raise SiteError(400, f"price {price_fen} fen per litre is not plausible")
        for n in nozzles:
            n.price_fen = price_fen
        return []

    def _move(self, fp: FuellingPoint, command: str) -> list[Event]:
        nxt = TRANSITIONS[command].get(fp.state)
        if nxt is None:
            raise SiteError(403, f"pump {fp.number}: {command} not accepted in state {fp.state.name}")
        if nxt == fp.state:
            return []
        before = self.status(fp.number)
        fp.state = nxt
        events: list[Event] = [FpEvent(fp.number, int(nxt))]
        if self.status(fp.number) != before:
            events.append(PumpEvent(fp.number, self.status(fp.number)))
        return events

    def _status_if_changed(self, fp: FuellingPoint, before: str) -> list[Event]:
        now_status = self.status(fp.number)
        return [PumpEvent(fp.number, now_status)] if now_status != before else []

    def _next_tx(self) -> str:
        self._tx += 1
        return f"{self.tx_prefix}{self._tx:06d}"

    # --- the forecourt: driver, attendant, controller ----------------------------------------------
    def lift(self, pump: int, nozzle: int) -> list[Event]:
        """The driver lifts a nozzle: Calling, then Authorised when the controller releases the pump
        (post-pay: automatically, unless the pump holds `unpaid_cap` unpaid sales)."""
        fp = self.point(pump)
        if nozzle not in fp.nozzles:
            raise SiteError(404, f"pump {pump} has no nozzle {nozzle}")
        if fp.lifted is not None:
            raise SiteError(403, f"pump {pump}: nozzle {fp.lifted} is already up")
        events = self._move(fp, "lift")
        fp.lifted = nozzle
        if fp.state == FP.CALLING and self.auto_authorise and len(fp.unpaid()) < self.unpaid_cap:
            events += self.authorise(pump)
        return events

    def authorise(
        self, pump: int, *, preset_ml: int | None = None, preset_fen: int | None = None
    ) -> list[Event]:
        """Release_FP, optionally with a preset volume or amount (dispensing stops there)."""
        fp = self.point(pump)
        if len(fp.unpaid()) >= self.unpaid_cap:
            raise SiteError(412, f"pump {pump} holds {len(fp.unpaid())} unpaid sales: pay them first")
        events = self._move(fp, "authorise")
        fp.preset_ml, fp.preset_fen = preset_ml, preset_fen
        return events

    def fuel(self, pump: int, ml: int) -> list[Event]:
        """The driver squeezes the trigger for `ml` more millilitres (dispensed by `tick` at the flow
        rate, stopping at a preset)."""
        fp = self.point(pump)
        if ml <= 0:
            raise SiteError(400, "fuel a positive volume")
        events: list[Event] = []
        if fp.state == FP.AUTHORISED:
            assert fp.lifted is not None
            noz = fp.nozzles[fp.lifted]
            fp.fuelling = Fuelling(
                self._next_tx(), noz.number, noz.total_ml, preset_ml=fp.preset_ml, preset_fen=fp.preset_fen
            )
            events += self._move(fp, "start")
        if fp.fuelling is None or fp.state not in (FP.STARTED, FP.FUELLING):
            raise SiteError(403, f"pump {pump}: not authorised to fuel (state {fp.state.name})")
        fp.fuelling.to_dispense_ml += ml
        return events

    def suspend(self, pump: int) -> list[Event]:
        return self._move(self.point(pump), "suspend")

    def resume(self, pump: int) -> list[Event]:
        return self._move(self.point(pump), "resume")

    def tick(self, now: datetime, dt_s: float) -> list[Event]:
        """Let `dt_s` seconds of fuel flow; report progress about every `progress_interval_s`."""
        events: list[Event] = []
        for fp in self.points.values():
            f = fp.fuelling
            if f is None or fp.state not in (FP.STARTED, FP.FUELLING):
                continue
            noz = fp.nozzles[f.nozzle]
            room = f.to_dispense_ml
            if f.preset_ml is not None:
                room = min(room, f.preset_ml - f.volume_ml)
            if f.preset_fen is not None:  # the largest volume whose amount stays within the preset
                room = min(room, (f.preset_fen * 1000 - 500) // noz.price_fen - f.volume_ml)
            step = max(0, min(room, int(fp.flow_ml_per_s * dt_s)))
            if step:
                if fp.state == FP.STARTED:
                    events += self._move(fp, "flow")
                f.volume_ml += step
                f.to_dispense_ml -= step
                f.amount_fen = expected_amount_fen(noz.price_fen, f.volume_ml)
            due = (
                f.last_progress is None or (now - f.last_progress).total_seconds() >= self.progress_interval_s
            )
            if step and due:
                events.append(self._progress(fp, f, now))
        return events

    def _progress(self, fp: FuellingPoint, f: Fuelling, now: datetime) -> ProgressEvent:
        f.seq += 1
        f.last_progress = now
        noz = fp.nozzles[f.nozzle]
        return ProgressEvent(fp.number, f.nozzle, f.site_tx_id, noz.grade, f.seq, f.volume_ml, f.amount_fen)

    def hang_up(self, pump: int, now: datetime) -> list[Event]:
        """The nozzle goes back: a fuelling that dispensed becomes a sale in the buffer (Payable, or
        Cleared offline while the host link is down), totalisers move; the pump is Idle again."""
        fp = self.point(pump)
        if fp.lifted is None:
            raise SiteError(403, f"pump {pump}: no nozzle is up")
        f = fp.fuelling
        events: list[Event] = []
        sale: BufferedSale | None = None
        if f is not None and f.volume_ml > 0:
            noz = fp.nozzles[f.nozzle]
            if f.seq == 0 or f.last_progress != now:  # the final figures are always reported
                events.append(self._progress(fp, f, now))
            noz.total_ml += f.volume_ml
            noz.total_fen += f.amount_fen
            noz.count += 1
            sale = BufferedSale(
                f.site_tx_id,
                pump,
                noz.number,
                noz.grade,
                f.volume_ml,
                f.amount_fen,
                noz.price_fen,
                f.start_total_ml,
                noz.total_ml,
                now,
                state="payable" if self.online else "cleared",
                offline=not self.online,
                cleared_by=None if self.online else "cashier",
            )
            fp.buffer.append(sale)
            self._trim(fp)
        before = self.status(pump)
        fp.state = TRANSITIONS["hang_up"].get(fp.state, fp.state)
        fp.lifted, fp.fuelling, fp.preset_ml, fp.preset_fen = None, None, None, None
        events.append(FpEvent(pump, int(fp.state)))
        if sale is not None:
            events.append(SaleEvent(sale))
        events += self._status_if_changed(fp, before) or [PumpEvent(pump, self.status(pump))]
        return events

    def _trim(self, fp: FuellingPoint) -> None:
        cleared = [s for s in fp.buffer if s.state == "cleared"]
        for old in cleared[: max(0, len(cleared) - self.keep_cleared)]:
            fp.buffer.remove(old)

    def _find(self, pump: int, site_tx_id: str) -> tuple[FuellingPoint, int]:
        fp = self.point(pump)
        for i, s in enumerate(fp.buffer):
            if s.site_tx_id == site_tx_id:
                return fp, i
        raise SiteError(404, f"pump {pump} has no sale {site_tx_id}")

    def _set(self, fp: FuellingPoint, i: int, sale: BufferedSale) -> list[Event]:
        before = self.status(fp.number)
        fp.buffer[i] = sale
        self._trim(fp)
        return [SaleEvent(sale), *self._status_if_changed(fp, before)]

    def pay_at_cashier(self, pump: int, site_tx_id: str | None = None) -> list[Event]:
        """The cashier takes the oldest payable sale of the pump (or the one named); a locked sale
        belongs to a mobile payment and is refused."""
        fp = self.point(pump)
        if site_tx_id is None:
            payable = [s for s in fp.buffer if s.state == "payable"]
            if not payable:
                raise SiteError(404, f"pump {pump} has no payable sale")
            site_tx_id = payable[0].site_tx_id
        fp, i = self._find(pump, site_tx_id)
        sale = fp.buffer[i]
        if sale.state == "locked":
            raise SiteError(409, f"sale {site_tx_id} is locked by a mobile payment")
        if sale.state == "cleared":
            raise SiteError(410, f"sale {site_tx_id} is already cleared")
        return self._set(fp, i, replace(sale, state="cleared", cleared_by="cashier"))

    def lock(self, pump: int, site_tx_id: str, fsc_tx_id: str) -> list[Event]:
        """LOCKTX: payable -> locked by this payment (again: no change); 409 locked by another, 410 cleared."""
        fp, i = self._find(pump, site_tx_id)
        sale = fp.buffer[i]
        if sale.state == "cleared":
            raise SiteError(410, f"sale {site_tx_id} is already cleared")
        if sale.state == "locked":
            if sale.locked_by != fsc_tx_id:
                raise SiteError(409, f"sale {site_tx_id} is locked by another payment")
            return [SaleEvent(sale)]
        return self._set(fp, i, replace(sale, state="locked", locked_by=fsc_tx_id))

    def unlock(self, pump: int, site_tx_id: str, fsc_tx_id: str) -> list[Event]:
        """UNLOCKTX: locked by this payment -> payable (payable: no change); 409, 410 as LOCKTX."""
        fp, i = self._find(pump, site_tx_id)
        sale = fp.buffer[i]
        if sale.state == "cleared":
            raise SiteError(410, f"sale {site_tx_id} is already cleared")
        if sale.state == "locked" and sale.locked_by != fsc_tx_id:
            raise SiteError(409, f"sale {site_tx_id} is locked by another payment")
        if sale.state == "payable":
            return [SaleEvent(sale)]
        return self._set(fp, i, replace(sale, state="payable", locked_by=None))

    def clear(self, pump: int, site_tx_id: str, fsc_tx_id: str) -> list[Event]:
        """CLEAR (OpenFSC): 404 unknown; 410 cleared by this same FSC transaction before (a retry: paid);
        403 paid another way (cashier, or another payment); 409 locked by another payment."""
        fp, i = self._find(pump, site_tx_id)
        sale = fp.buffer[i]
        if sale.state == "cleared":
            if sale.cleared_by == fsc_tx_id:
                raise SiteError(410, f"sale {site_tx_id} was cleared by this transaction already")
            raise SiteError(403, f"sale {site_tx_id} was paid otherwise ({sale.cleared_by})")
        if sale.state == "locked" and sale.locked_by != fsc_tx_id:
            raise SiteError(409, f"sale {site_tx_id} is locked by another payment")
        return self._set(fp, i, replace(sale, state="cleared", cleared_by=fsc_tx_id))

    def unlock_pump(self, pump: int, credit_fen: int) -> list[Event]:
        """UNLOCKPUMP (pre-auth): authorise with a preset amount of `credit_fen`."""
        fp = self.point(pump)
        if fp.state not in TRANSITIONS["authorise"]:
            raise SiteError(412, f"pump {pump} cannot be released in state {fp.state.name}")
        return self.authorise(pump, preset_fen=credit_fen)

    def open(self, pump: int) -> list[Event]:
        return self._move(self.point(pump), "open")

    def close(self, pump: int) -> list[Event]:
        return self._move(self.point(pump), "close")

    def sales_since(self, since: datetime | None) -> list[BufferedSale]:
        """Every buffered sale that ended at or after `since` (all with None), oldest first."""
        out = [s for fp in self.points.values() for s in fp.buffer if since is None or s.ended_at >= since]
        return sorted(out, key=lambda s: (s.ended_at, s.site_tx_id))

    def open_sales(self, pump: int | None = None) -> list[BufferedSale]:
        pumps = [self.point(pump)] if pump is not None else list(self.points.values())
        return [s for fp in pumps for s in fp.buffer if s.state != "cleared"]
