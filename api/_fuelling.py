"""Fuelling sessions: bind a phone to a nozzle, follow the pump, watch litres and amount live.

- `POST /v1/fuelling/sessions` {nozzle_token, preset_fen?}: a session bound to the scanned nozzle (201).
  The nozzle token is resolved like `GET /v1/nozzles/{token}` (404 forged or unknown, 410 revoked or out of
  service, 409 station closed); 503 when the station's link is offline (the session could not follow the
  pump); 409 when another session is at that pump (two phones scanning at once: one wins). With
  `preset_fen` the station is asked to release the pump for that amount (UNLOCKPUMP); if it refuses (409),
  does not answer (504) or is offline (503), the session is cancelled. Risk control (api/_risk_checks.py)
  answers 403 RiskDenied or RiskHeld (an operator reviews it) before anything is bound; the optional
  `device_fingerprint` (kept only as a keyed hash) and `vehicle_class` are its facts.
- `GET /v1/fuelling/sessions/{id}`: the session (the owner's only: 403 for someone else's, 404 unknown).
- `POST /v1/fuelling/sessions/{id}/cancel`: give the session up while nothing flows (bound, nozzle up,
  authorised) or, once completed, to pay at the cashier instead; 409 otherwise (fuelling, locked, ended).
- `GET /v1/fuelling/sessions/{id}/events?after_seq=N&limit=M`: the session's events after seq N (at most
  200 a page): the polling fallback of the live WebSocket.
- WebSocket `/v1/fuelling/sessions/{id}/live?token=T[&after_seq=N]`, or the token in the first message
  `{"token": T, "after_seq": N}`: first `{"type": "session", "session": {...}}` (the current state, with
  its `last_seq`), then every event after `after_seq` (default: the snapshot's last_seq) in order, each
  `{"type": "event", "event": {...}}` with its `seq`; closed with 1000 after a terminal state's event.
  Close codes: 4400 bad first message or after_seq, 4401 missing or invalid token, 4403 someone else's
  session, 4404 unknown session, 4408 the client does not keep up, 1013 database unavailable.

The state machine is fuelling/ (pure); where its events are applied is store/_sessions.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Path, Query, Request, WebSocket

from api import _tokens
from api._live import (
    CLOSE_BAD_REQUEST,
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_UNAUTHORIZED,
    Closed,
    LiveHub,
    live_channel,
    send_json,
)
from api._models import SessionCreate, SessionEventsPublic, SessionPublic, error_responses
from api._risk_checks import check_bind, wechat_rank
from api._state import AppState, get_state
from api._users import CurrentUser, require_owner
from forecourt import CommandTimeout, StationOffline, send_command
from geo._errors import Conflict, NotFound
from geo._hours import can_fill_up
from store import _sessions as sessions
from store._nozzles import StationClosed, resolve
from store._stations import get_station
from store._users import User

router = APIRouter(tags=["fuelling"])

SessionId = Annotated[int, Path(ge=1, le=2**63 - 1, description="fuelling session id")]
LINK_ALIVE_S = 60.0  # a station link silent longer than this (no heartbeat) counts as offline
IDLE_RECHECK_S = 15.0  # a live client with no wake-up reads again after this (a NOTIFY is only a hint)


class PresetRefused(Conflict):
    """The station refused to release the pump for the preset amount (409)."""


def _iso(at: datetime | None, state: AppState) -> str | None:
    return None if at is None else at.astimezone(state.region.tz).isoformat()


def session_out(row: dict[str, Any], state: AppState) -> dict[str, Any]:
    machine = sessions.load_machine(row["machine"])
    sale = machine.sale
    return {
        "id": row["id"],
        "state": row["state"],
        "terminal": machine.terminal,
        "mode": row["mode"],
        "preset_fen": row["preset_fen"],
        "station_id": row["station_id"],
        "pump_no": row["pump_no"],
        "nozzle_no": row["nozzle_no"],
        "grade": row["grade"],
        "volume_ml": row["volume_ml"],
        "litres": row["volume_ml"] / 1000,
        "amount_fen": row["amount_fen"],
        "amount": row["amount_fen"] / 100,
        "amount_final": machine.amount_final,
        "final_amount_fen": machine.final_amount_fen,
        "sale": None if sale is None else sale.__dict__.copy(),
        "review_reason": row["review_reason"],
        "last_seq": row["last_seq"],
        "created_at": _iso(row["created_at"], state),
        "updated_at": _iso(row["updated_at"], state),
        "expires_at": _iso(row["expires_at"], state),
        "ended_at": _iso(row["ended_at"], state),
    }


def event_out(e: dict[str, Any], state: AppState) -> dict[str, Any]:
    detail = e.get("detail") or {}
    out = {
        "seq": e["seq"],
        "type": e["type"],
        "kind": e["kind"],
        "state": e["state"],
        "volume_ml": e["volume_ml"],
        "litres": e["volume_ml"] / 1000,
        "amount_fen": e["amount_fen"],
        "amount": e["amount_fen"] / 100,
        "progress_seq": e["progress_seq"],
        "at": _iso(e["at"], state),
    }
    for key in ("sale", "final_amount_fen", "review_reason", "reason"):
        out[key] = detail.get(key)
    return out


def _owned(
    conn: psycopg.Connection[Any], session_id: int, user: User, *, for_update: bool = False
) -> dict[str, Any]:
    row = sessions.get(conn, session_id, for_update=for_update)
    if row is None:
        raise sessions.SessionNotFound(f"fuelling session {session_id} not found")
    require_owner(user, int(row["user_id"]), f"fuelling session {session_id}")
    return row


def _link_online(conn: psycopg.Connection[Any], station_id: int) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM forecourt_links WHERE station_id = %s AND last_seen_at > now() - make_interval(secs => %s)",
            (station_id, LINK_ALIVE_S),
        ).fetchone()
        is not None
    )


@router.post(
    "/v1/fuelling/sessions",
    status_code=201,
    response_model=SessionPublic,
    responses=error_responses(400, 401, 403, 404, 409, 410, 413, 422, 429, 503, 504, user=True),
)
def create_session(
    body: SessionCreate, user: CurrentUser, request: Request, state: AppState = Depends(get_state)
) -> dict[str, Any]:
    """Bind a fuelling session to the scanned nozzle: lift it, fuel, hang up, then pay the checked sale."""
    s = state.settings
    now = datetime.now(state.region.tz)
    actor = f"user:{user.id}"
    with state.db.transaction() as conn:
        nozzle = resolve(conn, body.nozzle_token, secret_key=s.secret_key)
        station = get_station(conn, nozzle.station_id)
        if station is None:
            raise NotFound(f"station {nozzle.station_id} not found")
        fill = can_fill_up(station["status"], station.get("opening_hours"), now, state.region.holidays)
        if fill.ok is False:
            raise StationClosed(nozzle.station_id, fill.reason or "closed")
        if not _link_online(conn, nozzle.station_id):
            raise StationOffline(nozzle.station_id, "its forecourt is not connected: pay at the cashier")
    check_bind(  # risk control, logged in its own transaction: 403 RiskDenied / RiskHeld
        state,
        user,
        nozzle,
        device_fingerprint=body.device_fingerprint,
        vehicle_class=body.vehicle_class,
        wechat_risk_rank=wechat_rank(state, user, request),
    )
    with state.db.transaction() as conn:
        row = sessions.create(
            conn,
            user_id=user.id,
            nozzle=nozzle,
            preset_fen=body.preset_fen,
            bind_timeout_s=s.fuelling_bind_timeout_s,
            actor=actor,
        )
    if body.preset_fen is not None:
        row = _release_for_preset(row, body.preset_fen, state, actor)
    return session_out(row, state)


def _release_for_preset(row: dict[str, Any], preset_fen: int, state: AppState, actor: str) -> dict[str, Any]:
    """UNLOCKPUMP with the preset amount; the session is cancelled when the station does not release it."""
    args = [
        str(row["pump_no"]),
        "CNY",
        f"{preset_fen // 100}.{preset_fen % 100:02d}",
        str(row["preset_fsc_tx_id"]),
        "wechat",
        str(row["grade"]),
    ]
    failure: Exception | None = None
    try:
        reply = send_command(
            state.db,
            int(row["station_id"]),
            "UNLOCKPUMP",
            args,
            timeout_s=state.settings.fuelling_preset_timeout_s,
            requested_by=f"fuelling-session:{row['id']}",
            link_alive_s=LINK_ALIVE_S,
        )
        if not reply.ok:
            failure = PresetRefused(
                f"the station did not release pump {row['pump_no']}: {reply.code} {reply.text}"
            )
    except (StationOffline, CommandTimeout) as exc:
        failure = exc
    if failure is None:
        with state.db.connection() as conn:
            fresh = sessions.get(conn, int(row["id"]))
        return fresh or row
    with state.db.transaction() as conn, contextlib.suppress(Conflict):
        sessions.cancel(conn, int(row["id"]), actor=actor, reason=f"preset not released: {failure}")
    raise failure


@router.get(
    "/v1/fuelling/sessions/{session_id}",
    response_model=SessionPublic,
    responses=error_responses(401, 403, 404, 422, 429, 503, user=True),
)
def get_session(
    session_id: SessionId, user: CurrentUser, state: AppState = Depends(get_state)
) -> dict[str, Any]:
    """The session: state, live litres and amount, the sale once there is one."""
    with state.db.connection() as conn:
        return session_out(_owned(conn, session_id, user), state)


@router.post(
    "/v1/fuelling/sessions/{session_id}/cancel",
    response_model=SessionPublic,
    responses=error_responses(401, 403, 404, 409, 422, 429, 503, user=True),
)
def cancel_session(
    session_id: SessionId, user: CurrentUser, state: AppState = Depends(get_state)
) -> dict[str, Any]:
    """Give the session up: before fuel flows (or, once completed, to pay at the cashier); 409 otherwise."""
    with state.db.transaction() as conn:
        _owned(conn, session_id, user, for_update=True)
        sessions.cancel(conn, session_id, actor=f"user:{user.id}")
        row = sessions.get(conn, session_id)
    assert row is not None
    return session_out(row, state)


@router.get(
    "/v1/fuelling/sessions/{session_id}/events",
    response_model=SessionEventsPublic,
    responses=error_responses(401, 403, 404, 422, 429, 503, user=True),
)
def session_events(
    session_id: SessionId,
    user: CurrentUser,
    state: AppState = Depends(get_state),
    after_seq: Annotated[int, Query(ge=0, le=2**31 - 1, description="the last seq the client has")] = 0,
    limit: Annotated[int, Query(ge=1, le=sessions.MAX_PAGE, description="events per page")] = 100,
) -> dict[str, Any]:
    """The session's events after `after_seq`, oldest first: the live WebSocket's polling fallback."""
    with state.db.connection() as conn:
        row = _owned(conn, session_id, user)
        events = sessions.events_after(conn, session_id, after_seq, limit)
    return {
        "session_id": session_id,
        "state": row["state"],
        "last_seq": row["last_seq"],
        "events": [event_out(e, state) for e in events],
        "more": bool(events) and events[-1]["seq"] < row["last_seq"],
    }


def expire_due(state: AppState) -> int:
    """The worker's sweeper (api/_live.py): sessions waiting at the pump past their time expire."""
    with state.db.transaction() as conn:
        return sessions.expire_due(conn)


# ---- the live WebSocket ---------------------------------------------------------------------------------


def _after_seq(value: object) -> int | None:
    if value is None:
        return None
    try:
        n = int(str(value))
    except ValueError:
        raise Closed(CLOSE_BAD_REQUEST, "after_seq must be an integer 0 or more") from None
    if not 0 <= n < 2**31:
        raise Closed(CLOSE_BAD_REQUEST, "after_seq must be an integer 0 or more")
    return n


async def _credentials(ws: WebSocket, state: AppState) -> tuple[User, int | None]:
    token = ws.query_params.get("token")
    after = _after_seq(ws.query_params.get("after_seq"))
    if not token:
        try:
            text = await asyncio.wait_for(ws.receive_text(), state.settings.fuelling_live_auth_timeout_s)
        except TimeoutError:
            raise Closed(
                CLOSE_UNAUTHORIZED, "a session token is required (query `token` or first message)"
            ) from None
        try:
            first = json.loads(text)
        except ValueError:
            raise Closed(
                CLOSE_BAD_REQUEST, 'the first message must be JSON: {"token": ..., "after_seq": ...}'
            ) from None
        if not isinstance(first, dict):
            raise Closed(CLOSE_BAD_REQUEST, 'the first message must be a JSON object {"token": ...}')
        token = first.get("token")
        if "after_seq" in first:
            after = _after_seq(first["after_seq"])
    user = (
        _tokens.verify(token.strip(), secret_key=state.settings.secret_key)
        if isinstance(token, str)
        else None
    )
    if user is None:
        raise Closed(CLOSE_UNAUTHORIZED, "the session token is missing, not valid or expired: log in again")
    hub: LiveHub = state.extras["live"]
    async with hub.pool.connection() as conn:  # a deleted account's tokens stop working (as current_user)
        cur = await conn.execute(
            "SELECT 1 FROM users WHERE id = %s AND openid = %s AND deleted_at IS NULL", (user.id, user.openid)
        )
        if await cur.fetchone() is None:
            raise Closed(CLOSE_UNAUTHORIZED, "this account no longer exists: log in again")
    return user, after


@router.websocket("/v1/fuelling/sessions/{session_id}/live")
async def live(ws: WebSocket, session_id: int) -> None:
    """Live state, litres and amount of a fuelling session (see the module docstring for the protocol)."""
    state: AppState = ws.app.state.fuel
    hub: LiveHub = state.extras["live"]
    async with live_channel(
        ws,
        hub,
        name=f"live session {session_id}",
        not_taken="the client does not take the session's events",
        try_again="database unavailable, reconnect shortly with after_seq",
    ) as channel:
        user, after = await _credentials(ws, state)
        channel.subscribe(session_id)
        async with hub.pool.connection() as conn:
            row = await sessions.get_async(conn, session_id)
        if row is None:
            raise Closed(CLOSE_NOT_FOUND, f"fuelling session {session_id} not found")
        if int(row["user_id"]) != user.id:
            raise Closed(CLOSE_FORBIDDEN, f"fuelling session {session_id} belongs to another user")
        await _send(ws, {"type": "session", "session": session_out(row, state)}, state)
        sent = int(row["last_seq"]) if after is None else min(after, int(row["last_seq"]))
        if after is None and sessions.terminal(row["state"]):
            raise Closed(1000, f"the session is {row['state']}")
        channel.follow_client()
        while True:
            async with hub.pool.connection() as conn:
                events = await sessions.events_after_async(conn, session_id, sent)
            for e in events:
                await _send(ws, {"type": "event", "event": event_out(e, state)}, state)
                sent = int(e["seq"])
                if sessions.terminal(e["state"]):
                    raise Closed(1000, f"the session is {e['state']}")
            if len(events) == sessions.MAX_PAGE:
                continue
            if not await channel.wait(
                IDLE_RECHECK_S, "the client does not keep up with the session's events"
            ):
                return  # the client went away


async def _send(ws: WebSocket, message: dict[str, Any], state: AppState) -> None:
    await send_json(ws, message, state.settings.fuelling_live_send_timeout_s)
