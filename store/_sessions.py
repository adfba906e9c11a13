"""Fuelling sessions (migration 0017): a phone bound to one nozzle, following its pump until the sale is paid.

Where events are applied: in the transaction that stores them. The station link server, in the same
transaction that writes a pump status, a progress row or a controller sale (with its `forecourt` NOTIFY),
advances the session that follows that pump through the pure state machine (`fuelling.apply`), appends
the session's event with the next sequence number and NOTIFYs channel `fuelling` ({"session_id", "seq"}).
The API does the same for what it causes (bind, cancel, expiry, the preset's refusal) and the payment code
for locks and payments (`on_sale_locked`, `on_sale_paid`, ...), each in its own transaction. So there is one
path, store first: a session's events are its history (`fuelling_session_events`, seq 1, 2, ... without
gap), every API worker reads the same rows, and a NOTIFY that nobody heard loses nothing (readers resume
from the last seq they have). A line that does not fit the session (a state the table refuses, progress
that goes backwards, a sale of another fuelling) leaves the session as it was.

Which session an event is for:
- pump status and progress: the session *at the pump* (bound, nozzle_up, authorised, fuelling) of that
  station and pump; progress only when it is on the session's nozzle and of the fuelling it follows (its
  SiteTxID, taken from the first progress);
- a sale: the session that holds it (sale_id), else the session at the pump on the sale's nozzle whose
  fuelling it is (same SiteTxID, or, with no progress seen, a sale first seen after the session was bound:
  never an older sale still in the pump's buffer). A fuelling whose progress began before the session was
  bound (another driver's, still fuelling when the phone scanned) is never the session's. A report of the sale as `locked` is not an event: the
  lock's outcome reaches the session from the payment that sent LOCKTX.
- timeouts: `expire_due` (the API workers' sweeper) and `create` for the pump it binds.

The database logic is written once as generators of statements (`_Io`), run by a sync driver (API,
payments) or an async one (the link server).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from fuelling import (
    TERMINAL,
    Cancel,
    Event,
    InvalidTransition,
    Kind,
    LockResult,
    Paid,
    Progress,
    PumpStatus,
    Sale,
    SaleInfo,
    Session,
    State,
    Timeout,
    Unlocked,
    apply,
    new_session,
)
from geo._errors import Conflict, InvalidInput, NotFound
from store._audit import record
from store._forecourt import ProgressIn
from store._nozzles import Nozzle

log = logging.getLogger("store.sessions")
CHANNEL = "fuelling"
AT_PUMP: tuple[str, ...] = ("bound", "nozzle_up", "authorised", "fuelling")
EXPIRING: tuple[str, ...] = ("bound", "nozzle_up", "authorised")
MAX_PAGE = 200  # events per page of the polling fallback and per read of a live connection

COLUMNS = (
    "id, user_id, station_id, pump_no, nozzle_no, grade, state, mode, preset_fen, preset_fsc_tx_id, machine,"
    " site_tx_id, sale_id, volume_ml, amount_fen, review_reason, last_seq, expires_at, created_at,"
    " updated_at, ended_at"
)
EVENT_COLUMNS = "seq, type, kind, state, volume_ml, amount_fen, progress_seq, detail, at"


class PumpBusy(Conflict):
    """Another session is at this pump (409): two phones scanning the same nozzle, one wins."""


class SessionNotFound(NotFound):
    """No such fuelling session (404)."""


# ---- the pure session in JSON -------------------------------------------------------------------------


def dump_machine(s: Session) -> dict[str, Any]:
    out = dataclasses.asdict(s)
    out["state"] = s.state.value
    return out


def load_machine(d: Mapping[str, Any]) -> Session:
    sale = d.get("sale")
    return Session(
        state=State(d["state"]),
        mode=d.get("mode", "postpay"),
        preset_amount_fen=d.get("preset_amount_fen"),
        last_seq=int(d.get("last_seq", 0)),
        volume_ml=int(d.get("volume_ml", 0)),
        amount_fen=int(d.get("amount_fen", 0)),
        sale=None if sale is None else SaleInfo(**sale),
        review_reason=d.get("review_reason"),
        version=int(d.get("version", 0)),
    )


# ---- statements as generators, two drivers ------------------------------------------------------------

Op = tuple[Literal["one", "all", "exec"], str, Mapping[str, Any]]
_Io = Generator[Op, Any, Any]


def run_sync(conn: psycopg.Connection[Any], io: _Io) -> Any:
    result: Any = None
    try:
        while True:
            op, query, params = io.send(result)
            cur = conn.cursor(row_factory=dict_row)
            cur.execute(query.encode(), params)
            result = cur.fetchone() if op == "one" else cur.fetchall() if op == "all" else None
    except StopIteration as stop:
        return stop.value


async def run_async(conn: psycopg.AsyncConnection[Any], io: _Io) -> Any:
    result: Any = None
    try:
        while True:
            op, query, params = io.send(result)
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(query.encode(), params)
            result = await cur.fetchone() if op == "one" else await cur.fetchall() if op == "all" else None
    except StopIteration as stop:
        return stop.value


# ---- one step of a session ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    """What applying an event did: the session's state before and after, the event's seq (None when the
    event changed nothing a client sees), and why it was refused (None when it was applied)."""

    session_id: int
    before: str
    after: str
    seq: int | None
    refused: str | None = None


def _event_detail(s: Session, kind: Kind, extra: Mapping[str, Any]) -> dict[str, Any]:
    detail: dict[str, Any] = dict(extra)
    if kind != Kind.PROGRESS:
        if s.sale is not None:
            detail["sale"] = dataclasses.asdict(s.sale)
        if s.review_reason:
            detail["review_reason"] = s.review_reason
        if s.final_amount_fen is not None:
            detail["final_amount_fen"] = s.final_amount_fen
    return detail


def _step(
    row: Mapping[str, Any],
    event: Event,
    *,
    sale_id: int | None = None,
    site_tx_id: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> _Io:
    """Apply `event` to the locked session `row`; store the new session, its event and the NOTIFY."""
    session = load_machine(row["machine"])
    try:
        t = apply(session, event)
    except (InvalidTransition, InvalidInput) as exc:  # the session is unchanged
        return Applied(int(row["id"]), session.state.value, session.state.value, None, str(exc))
    new = t.session
    visible = t.changed or t.kind == Kind.PROGRESS or new.sale != session.sale
    if not visible:
        return Applied(int(row["id"]), t.before.value, t.after.value, None)
    seq = int(row["last_seq"]) + 1
    sale = new.sale
    yield (
        "exec",
        "UPDATE fuelling_sessions SET state = %(state)s, machine = %(machine)s, volume_ml = %(v)s,"
        " amount_fen = %(a)s, review_reason = %(review)s, last_seq = %(seq)s, updated_at = now(),"
        " sale_id = COALESCE(%(sale_id)s, sale_id), site_tx_id = COALESCE(%(tx)s, site_tx_id),"
        " ended_at = CASE WHEN %(terminal)s THEN now() ELSE ended_at END WHERE id = %(id)s",
        {
            "id": row["id"],
            "state": new.state.value,
            "machine": Jsonb(dump_machine(new)),
            "v": new.volume_ml,
            "a": new.amount_fen,
            "review": new.review_reason,
            "seq": seq,
            "sale_id": sale_id if sale is not None else None,
            "tx": site_tx_id or (sale.site_tx_id if sale is not None else None),
            "terminal": new.terminal,
        },
    )
    yield (
        "exec",
        "INSERT INTO fuelling_session_events (session_id, seq, type, kind, state, volume_ml, amount_fen,"
        " progress_seq, detail) VALUES (%(id)s, %(seq)s, %(type)s, %(kind)s, %(state)s, %(v)s, %(a)s,"
        " %(pseq)s, %(detail)s)",
        {
            "id": row["id"],
            "seq": seq,
            "type": "progress" if t.kind == Kind.PROGRESS and not t.changed else "state",
            "kind": t.kind.value,
            "state": new.state.value,
            "v": new.volume_ml,
            "a": new.amount_fen,
            "pseq": new.last_seq or None,
            "detail": Jsonb(_event_detail(new, t.kind, detail or {})),
        },
    )
    yield ("exec", "SELECT pg_notify(%(ch)s, %(p)s)", {"ch": CHANNEL, "p": _note(int(row["id"]), seq)})
    return Applied(int(row["id"]), t.before.value, t.after.value, seq)


def _note(session_id: int, seq: int) -> str:
    return json.dumps({"session_id": session_id, "seq": seq}, separators=(",", ":"))


# ---- what the station link reports ----------------------------------------------------------------------


def status_io(station_id: int, pump_no: int) -> _Io:
    """The pump's stored status (just written) to the session at the pump, if any."""
    row = yield (
        "one",
        f"SELECT {', '.join('s.' + c.strip() for c in COLUMNS.split(','))}, ps.status AS pump_status,"
        " ps.fp_state AS pump_fp_state FROM fuelling_sessions s JOIN pump_status ps"
        " ON ps.station_id = s.station_id AND ps.pump_no = s.pump_no"
        " WHERE s.station_id = %(s)s AND s.pump_no = %(p)s AND s.state = ANY(%(at)s) FOR UPDATE OF s",
        {"s": station_id, "p": pump_no, "at": list(AT_PUMP)},
    )
    if row is None:
        return None
    event = PumpStatus(row["pump_status"], row["pump_fp_state"])
    return (yield from _step(row, event))


def progress_io(p: ProgressIn) -> _Io:
    """A stored progress row to the session at the pump, when it is on its nozzle and of its fuelling."""
    row = yield (
        "one",
        f"SELECT {COLUMNS} FROM fuelling_sessions WHERE station_id = %(s)s AND pump_no = %(p)s"
        " AND state = ANY(%(at)s) FOR UPDATE",
        {"s": p.station_id, "p": p.pump_no, "at": list(AT_PUMP)},
    )
    if row is None or row["nozzle_no"] != p.nozzle_no:
        return None
    if row["site_tx_id"] is not None and p.site_tx_id is not None and row["site_tx_id"] != p.site_tx_id:
        return Applied(int(row["id"]), row["state"], row["state"], None, "progress of another fuelling")
    if row["site_tx_id"] is None and (yield from _started_before(row, p.site_tx_id)):
        return Applied(
            int(row["id"]), row["state"], row["state"], None, "a fuelling begun before the binding"
        )
    return (yield from _step(row, Progress(p.seq, p.volume_ml, p.amount_fen), site_tx_id=p.site_tx_id))


def _started_before(row: Mapping[str, Any], site_tx_id: str | None) -> _Io:
    """The fuelling reported progress before the session was bound: someone else's (the phone bound the
    pump while another driver was fuelling), never the session's."""
    earlier = yield (
        "one",
        "SELECT 1 AS x FROM pump_progress WHERE station_id = %(s)s AND pump_no = %(p)s"
        " AND site_tx_id IS NOT DISTINCT FROM %(tx)s AND received_at < %(at)s LIMIT 1",
        {"s": row["station_id"], "p": row["pump_no"], "tx": site_tx_id, "at": row["created_at"]},
    )
    return earlier is not None


def _sale_event(sale: Mapping[str, Any]) -> Sale:
    return Sale(
        site_tx_id=str(sale["site_tx_id"]),
        volume_ml=int(sale["volume_ml"]),
        amount_fen=int(sale["amount_fen"]),
        unit_price_fen=int(sale["unit_price_fen"]),
        totaliser_start_ml=int(sale["totaliser_start_ml"] or 0),
        totaliser_end_ml=int(sale["totaliser_end_ml"] or 0),
        state=sale["state"],
        offline=bool(sale["offline"]),
        review_reason=sale["review_reason"],
    )


def sale_io(sale_id: int) -> _Io:
    """A stored (new or changed) controller sale to the session that holds it or whose fuelling it is."""
    sale = yield (
        "one",
        "SELECT id, station_id, pump_no, nozzle_no, site_tx_id, volume_ml, amount_fen, unit_price_fen,"
        " totaliser_start_ml, totaliser_end_ml, state, offline, cleared_by, review_reason, first_seen_at"
        " FROM fcc_sales WHERE id = %(id)s",
        {"id": sale_id},
    )
    if sale is None or sale["state"] == "locked":
        return None
    row = yield (
        "one",
        f"SELECT {COLUMNS} FROM fuelling_sessions WHERE sale_id = %(id)s FOR UPDATE",
        {"id": sale_id},
    )
    if row is None:
        row = yield (
            "one",
            f"SELECT {COLUMNS} FROM fuelling_sessions WHERE station_id = %(s)s AND pump_no = %(p)s"
            " AND state = ANY(%(at)s) AND sale_id IS NULL FOR UPDATE",
            {"s": sale["station_id"], "p": sale["pump_no"], "at": list(AT_PUMP)},
        )
        if row is None or row["nozzle_no"] != sale["nozzle_no"]:
            return None
        ours = (
            row["site_tx_id"] == sale["site_tx_id"]
            if row["site_tx_id"] is not None
            else sale["first_seen_at"] >= row["created_at"]
            and not (yield from _started_before(row, sale["site_tx_id"]))
        )
        if not ours:
            return Applied(int(row["id"]), row["state"], row["state"], None, "a sale of another fuelling")
    detail = {"cleared_by": sale["cleared_by"]} if sale["cleared_by"] else {}
    return (yield from _step(row, _sale_event(sale), sale_id=sale_id, detail=detail))


async def on_status(conn: psycopg.AsyncConnection[Any], station_id: int, pump_no: int) -> Applied | None:
    """The link server, in the transaction that stored the pump's status."""
    return await run_async(conn, status_io(station_id, pump_no))


async def on_progress(conn: psycopg.AsyncConnection[Any], p: ProgressIn) -> Applied | None:
    """The link server, in the transaction that stored the progress row."""
    return await run_async(conn, progress_io(p))


async def on_sale(conn: psycopg.AsyncConnection[Any], sale_id: int) -> Applied | None:
    """The link server, in the transaction that stored the sale."""
    return await run_async(conn, sale_io(sale_id))


# ---- the payment's steps (sync: called in the payment code's own transaction) ------------------------------


def _by_sale(sale_id: int, event_of: Any) -> _Io:
    row = yield (
        "one",
        f"SELECT {COLUMNS} FROM fuelling_sessions WHERE sale_id = %(id)s FOR UPDATE",
        {"id": sale_id},
    )
    if row is None:
        return None
    tx = load_machine(row["machine"]).sale
    event = event_of(tx.site_tx_id if tx is not None else str(row["site_tx_id"]))
    applied = yield from _step(row, event)
    if applied.refused:
        raise InvalidTransition(State(applied.before), None, applied.refused)
    return applied


def on_sale_locked(conn: psycopg.Connection[Any], sale_id: int) -> Applied | None:
    """LOCKTX answered OK for the session's sale: completed -> locked. None when no session holds the sale;
    InvalidTransition (409) when the session cannot be locked (e.g. in review, or taken by the cashier)."""
    return run_sync(conn, _by_sale(sale_id, lambda tx: LockResult(tx, "ok")))


def on_sale_lock_refused(
    conn: psycopg.Connection[Any], sale_id: int, outcome: Literal["locked_elsewhere", "cleared"]
) -> Applied | None:
    """LOCKTX answered 409 (locked by someone else) or 410 (already cleared): the session is taken."""
    return run_sync(conn, _by_sale(sale_id, lambda tx: LockResult(tx, outcome)))


def on_sale_unlocked(conn: psycopg.Connection[Any], sale_id: int) -> Applied | None:
    """UNLOCKTX answered OK (the payment was abandoned): locked -> completed, the sale payable again."""
    return run_sync(conn, _by_sale(sale_id, Unlocked))


def on_sale_paid(conn: psycopg.Connection[Any], sale_id: int) -> Applied | None:
    """The payment for the locked sale succeeded: locked -> paid."""
    return run_sync(conn, _by_sale(sale_id, Paid))


# ---- the API's steps --------------------------------------------------------------------------------------


def _expire_pump(station_id: int, pump_no: int) -> _Io:
    rows = yield (
        "all",
        f"SELECT {COLUMNS} FROM fuelling_sessions WHERE station_id = %(s)s AND pump_no = %(p)s"
        " AND state = ANY(%(e)s) AND expires_at <= now() FOR UPDATE",
        {"s": station_id, "p": pump_no, "e": list(EXPIRING)},
    )
    for row in rows:
        yield from _step(row, Timeout(), detail={"reason": "no fuelling within the binding's time"})


def create(
    conn: psycopg.Connection[Any],
    *,
    user_id: int,
    nozzle: Nozzle,
    preset_fen: int | None,
    bind_timeout_s: float,
    actor: str,
) -> dict[str, Any]:
    """Bind a new session to `nozzle` (inside the caller's transaction): its row, event 1 (bound), the
    NOTIFY and the audit row. PumpBusy (409) when another session is at the pump or fuel is flowing there."""
    machine = new_session(preset_amount_fen=preset_fen)  # validates the preset (InvalidInput, 422)
    run_sync(conn, _expire_pump(nozzle.station_id, nozzle.pump_no))
    flowing = conn.execute(
        "SELECT 1 FROM pump_status WHERE station_id = %s AND pump_no = %s AND valid_until > now()"
        " AND (status = 'in-transaction' OR fp_state BETWEEN 6 AND 9)",
        (nozzle.station_id, nozzle.pump_no),
    ).fetchone()
    if flowing is not None:  # another driver's fuelling: it must never become this session's
        raise PumpBusy(
            f"pump {nozzle.pump_no} of station {nozzle.station_id} is delivering fuel to another driver: "
            "scan again when it is free"
        )
    fsc_tx_id = str(uuid.uuid4()) if preset_fen is not None else None
    cur = conn.cursor(row_factory=dict_row)
    row = cur.execute(
        "INSERT INTO fuelling_sessions (user_id, station_id, pump_no, nozzle_no, grade, state, mode,"
        " preset_fen, preset_fsc_tx_id, machine, expires_at) VALUES (%(u)s, %(s)s, %(p)s, %(n)s, %(g)s,"
        " 'bound', %(mode)s, %(preset)s, %(fsc)s, %(machine)s, now() + make_interval(secs => %(ttl)s))"
        " ON CONFLICT (station_id, pump_no) WHERE state IN ('bound', 'nozzle_up', 'authorised', 'fuelling')"
        f" DO NOTHING RETURNING {COLUMNS}",
        {
            "u": user_id,
            "s": nozzle.station_id,
            "p": nozzle.pump_no,
            "n": nozzle.nozzle_no,
            "g": nozzle.grade,
            "mode": machine.mode,
            "preset": preset_fen,
            "fsc": fsc_tx_id,
            "machine": Jsonb(dump_machine(machine)),
            "ttl": bind_timeout_s,
        },
    ).fetchone()
    if row is None:
        raise PumpBusy(
            f"pump {nozzle.pump_no} of station {nozzle.station_id} is in use by another fuelling session: "
            "wait until it ends, or pick another pump"
        )
    cur.execute(
        "INSERT INTO fuelling_session_events (session_id, seq, type, kind, state, volume_ml, amount_fen,"
        " detail) VALUES (%s, 1, 'state', 'bound', 'bound', 0, 0, %s)",
        (row["id"], Jsonb({"preset_fen": preset_fen} if preset_fen is not None else {})),
    )
    cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, _note(int(row["id"]), 1)))
    record(
        conn,
        actor=actor,
        action="create",
        entity="fuelling_session",
        entity_id=row["id"],
        old=None,
        new={
            "user_id": user_id,
            "station_id": nozzle.station_id,
            "pump_no": nozzle.pump_no,
            "nozzle_no": nozzle.nozzle_no,
            "grade": nozzle.grade,
            "mode": machine.mode,
            "preset_fen": preset_fen,
        },
    )
    return dict(row)


def get(conn: psycopg.Connection[Any], session_id: int, *, for_update: bool = False) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    lock = " FOR UPDATE" if for_update else ""
    row = cur.execute(
        f"SELECT {COLUMNS} FROM fuelling_sessions WHERE id = %s{lock}", (session_id,)
    ).fetchone()
    return None if row is None else dict(row)


def cancel(
    conn: psycopg.Connection[Any], session_id: int, *, actor: str, reason: str = "cancelled"
) -> Applied:
    """The driver gives the session up (inside the caller's transaction). InvalidTransition (409) when the
    state machine does not allow it (fuelling, or already ended)."""
    row = get(conn, session_id, for_update=True)
    if row is None:
        raise SessionNotFound(f"fuelling session {session_id} not found")
    applied: Applied = run_sync(conn, _step(row, Cancel(), detail={"reason": reason}))
    if applied.refused:
        raise InvalidTransition(State(applied.before), Kind.CANCEL, _cancel_refusal(applied.before))
    record(
        conn,
        actor=actor,
        action="update",
        entity="fuelling_session",
        entity_id=session_id,
        old={"state": applied.before},
        new={"state": applied.after, "reason": reason},
    )
    return applied


def _cancel_refusal(state: str) -> str:
    if state == "fuelling":
        return "the session cannot be cancelled while fuel is flowing: hang the nozzle up first"
    if state == "locked":
        return "the sale is locked for payment: finish or abandon the payment first"
    return f"the session is {state}: it cannot be cancelled"


def expire_due(conn: psycopg.Connection[Any], *, limit: int = 100, actor: str = "fuelling-expiry") -> int:
    """Sessions still waiting at the pump past their binding's time: expired (skipping rows another worker
    holds). Returns how many expired."""
    cur = conn.cursor(row_factory=dict_row)
    rows = cur.execute(
        f"SELECT {COLUMNS} FROM fuelling_sessions WHERE state = ANY(%s) AND expires_at <= now()"
        " ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED",
        (list(EXPIRING), limit),
    ).fetchall()
    n = 0
    for row in rows:
        applied: Applied = run_sync(
            conn, _step(row, Timeout(), detail={"reason": "no fuelling within the binding's time"})
        )
        if applied.seq is not None:
            n += 1
            record(
                conn,
                actor=actor,
                action="update",
                entity="fuelling_session",
                entity_id=row["id"],
                old={"state": applied.before},
                new={"state": applied.after},
            )
    return n


def events_after(
    conn: psycopg.Connection[Any], session_id: int, after_seq: int, limit: int
) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    return [
        dict(r)
        for r in cur.execute(
            f"SELECT {EVENT_COLUMNS} FROM fuelling_session_events WHERE session_id = %s AND seq > %s"
            " ORDER BY seq LIMIT %s",
            (session_id, after_seq, min(limit, MAX_PAGE)),
        ).fetchall()
    ]


async def events_after_async(
    conn: psycopg.AsyncConnection[Any], session_id: int, after_seq: int, limit: int = MAX_PAGE
) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT {EVENT_COLUMNS} FROM fuelling_session_events WHERE session_id = %s AND seq > %s"
        " ORDER BY seq LIMIT %s",
        (session_id, after_seq, min(limit, MAX_PAGE)),
    )
    return [dict(r) for r in await cur.fetchall()]


async def get_async(conn: psycopg.AsyncConnection[Any], session_id: int) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"SELECT {COLUMNS} FROM fuelling_sessions WHERE id = %s", (session_id,))
    row = await cur.fetchone()
    return None if row is None else dict(row)


def sale_of(row: Mapping[str, Any]) -> SaleInfo | None:
    return load_machine(row["machine"]).sale


def terminal(state: str) -> bool:
    return State(state) in TERMINAL


def register_payment_hooks() -> None:
    """Let a sale's payment move the session holding it, in the payment's own transaction: locked when the
    site locked the sale (LOCKTX OK), paid on the payment's notification, back to completed when an
    unpaid order's lock was released (UNLOCKTX). Every process that runs payment code calls this once at
    start (the API, the payments worker); a second call changes nothing."""
    import payments  # here, not at the top: payments imports store, a top-level import would be circular

    for hooks, hook in (
        (payments.on_locked, on_sale_locked),
        (payments.on_paid, on_sale_paid),
        (payments.on_unlocked, on_sale_unlocked),
    ):
        if hook not in hooks:
            hooks.append(hook)
