"""The station console's push channel: pump and nozzle status changes and new fill-ups as they happen.

WebSocket `/v1/console/stations/{station_id}/live`, authenticated by the console session cookie
(`fuel_console`, as every console endpoint; SameSite=Strict, so only the console's own pages send it).
Closes 4401 without a live session, 4403 for another station's staff. The server sends JSON messages:

- `{"type": "pumps", "pumps": {...}}`: the body of GET /v1/console/pumps, at connect and whenever a pump's
  status changes (or its reading goes stale);
- `{"type": "fill_ups", "fill_ups": {...}}`: the body of GET /v1/console/fill-ups?limit=50, at connect and
  whenever the day's fill-ups change (a new sale, a sale paid or cleared).

What is sent is read from the tables when the worker's hub (api/_live.py) hears a `forecourt` NOTIFY of the
station, and every IDLE_RECHECK_S regardless (a payment clears a sale without a forecourt note; a status goes
stale with none); a message goes out only when its content changed. When the session ends or expires the
channel closes 4401. The page polls the two GET endpoints only while this channel is down, and reconnects.
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, WebSocket

from api._console import COOKIE, fill_ups_view, pumps_view, staff_of_token
from api._console_models import ConsolePumpsPublic, FillUpsPublic
from api._live import CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED, Closed, LiveHub, live_channel, send_json
from api._state import AppState

router = APIRouter(tags=["console"])
IDLE_RECHECK_S = 5.0
FILL_UPS_SHOWN = 50


def _views(state: AppState, station_id: int) -> dict[str, dict[str, Any]]:
    """What the page shows, as the GET endpoints answer it (JSON-ready)."""
    pumps = ConsolePumpsPublic.model_validate(pumps_view(state, station_id)).model_dump(mode="json")
    fills = FillUpsPublic.model_validate(fill_ups_view(state, station_id, FILL_UPS_SHOWN)).model_dump(
        mode="json"
    )
    return {"pumps": pumps, "fill_ups": fills}


def _changed(kind: str, view: dict[str, Any], last: dict[str, Any]) -> bool:
    same = {k: v for k, v in view.items() if k != "checked_at"}  # the read time alone is no change
    if last.get(kind) == same:
        return False
    last[kind] = same
    return True


async def _staff_or_close(state: AppState, ws: WebSocket, station_id: int) -> None:
    token = ws.cookies.get(COOKIE)
    staff = await anyio.to_thread.run_sync(staff_of_token, state, token) if token else None
    if staff is None:
        raise Closed(CLOSE_UNAUTHORIZED, "log in to the console first (the session ended or expired)")
    if staff.station_id != station_id:
        raise Closed(CLOSE_FORBIDDEN, f"station {station_id} is not your station")


@router.websocket("/v1/console/stations/{station_id}/live")
async def console_live(ws: WebSocket, station_id: int) -> None:
    """Live pumps and fill-ups of the staff member's own station (see the module docstring)."""
    state: AppState = ws.app.state.fuel
    hub: LiveHub = state.extras["live"]
    timeout_s = state.settings.fuelling_live_send_timeout_s
    async with live_channel(
        ws,
        hub,
        name=f"console live, station {station_id}",
        not_taken="the client does not take the station's changes",
        try_again="database unavailable, reconnect shortly",
    ) as channel:
        await _staff_or_close(state, ws, station_id)
        channel.subscribe(station_id, "station")
        channel.follow_client()
        last: dict[str, Any] = {}
        while True:
            views = await anyio.to_thread.run_sync(_views, state, station_id)
            for kind, view in views.items():
                if _changed(kind, view, last):
                    await send_json(ws, {"type": kind, kind: view}, timeout_s)
            if not await channel.wait(
                IDLE_RECHECK_S, "the client does not keep up with the station's changes"
            ):
                return  # the client went away
            await _staff_or_close(state, ws, station_id)  # a logout or an expiry ends the channel
