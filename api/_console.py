"""The station console's API (the page is /console/): staff logins, accounts, live pumps, the day's
fill-ups, prices with the official ceiling, shift handovers (交班), sales reports and the daily close (日结).

- `POST /v1/console/login` {username, password}: a staff session (server-side, CONSOLE_SESSION_TTL) in the
  cookie `fuel_console` (HttpOnly, SameSite=Strict, Path=/). Wrong credentials: 401 (the same for an
  unknown username); the 5th failure in a row locks the account for 15 minutes: 429 with Retry-After
  (audited). Failures also count per client address like API keys do.
- `POST /v1/console/staff`: an operator API key (X-API-Key) creates managers and attendants of any
  station; a manager's session creates attendants of its own station. Audited.
- Everything else takes the console session and works on the staff member's own station.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response, Security
from fastapi.security import APIKeyCookie
from openpyxl import Workbook
from openpyxl.chart import BarChart, Reference
from psycopg.rows import dict_row

from api._auth import API_KEY, Forbidden, Unauthorized, authenticate, failures_wait, record_failure
from api._ceilings import ceiling_freshness
from api._console_models import (
    ConsolePricesPublic,
    ConsolePumpsPublic,
    CorrectionIn,
    DailyCloseIn,
    DailyClosePublic,
    FillUpsPublic,
    HandoverSignedPublic,
    LoginIn,
    SalesReportPublic,
    SessionPublic,
    ShiftListPublic,
    ShiftPublic,
    SignIncomingIn,
    StaffCreate,
    StaffListPublic,
    StaffPublic,
    TendersIn,
)
from api._limits import RateLimited, limits_of
from api._models import error_responses
from api._state import AppState, get_state
from backoffice import may_create
from geo._errors import NotFound
from store._ceilings import ceiling_at
from store._prices import current_prices
from store._promotions import promotions_for_stations
from store._pumps import station_pumps
from store._sales_report import close_day, get_close, sales_report
from store._shifts import (
    add_correction,
    close_shift,
    enter_tenders,
    get_shift,
    list_shifts,
    open_shift,
    running_shift,
    sign_incoming,
    sign_outgoing,
)
from store._staff import (
    AccountLocked,
    LoginFailed,
    Staff,
    create_staff,
    end_session,
    list_staff,
    session_staff,
    start_session,
    verify_credentials,
)
from store._stations import get_station

router = APIRouter(tags=["console"])
COOKIE = "fuel_console"
SESSION_COOKIE = APIKeyCookie(
    name=COOKIE,
    scheme_name="ConsoleSession",
    description="A station console session from POST /v1/console/login (HttpOnly cookie).",
    auto_error=False,
)
MAX_FILL_UPS = 200
ShiftId = Annotated[int, Path(ge=1, le=2**63 - 1, description="shift id")]
ERR = (400, 401, 403, 404, 409, 413, 422, 429, 503)  # writes (a body, or none)
READ_ERR = (401, 403, 404, 422, 429, 503)


class ConsoleUnauthorized(Unauthorized):
    """No console session, or one that ended or expired (401)."""

    challenge = f'Cookie name="{COOKIE}"'


def console_staff(
    token: str | None = Security(SESSION_COOKIE), state: AppState = Depends(get_state)
) -> Staff:
    if not token:
        raise ConsoleUnauthorized("log in to the console first: POST /v1/console/login")
    staff = staff_of_token(state, token)
    if staff is None:
        raise ConsoleUnauthorized("the console session has ended or expired: log in again")
    return staff


def staff_of_token(state: AppState, token: str) -> Staff | None:
    """The staff member of a live console session token (None: ended, expired or unknown)."""
    with state.db.connection() as conn:
        return session_staff(conn, token, now=datetime.now(state.region.tz))


def manager(staff: Staff = Depends(console_staff)) -> Staff:
    if staff.role != "manager":
        raise Forbidden("station managers only")
    return staff


def _address(request: Request) -> str:
    limits = limits_of(request.app)
    return limits.address(request.scope) if limits else str((request.scope.get("client") or ("?",))[0])


def _staff_out(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in StaffPublic.model_fields if k in row}


def _station_name(state: AppState, station_id: int) -> str:
    with state.db.connection() as conn:
        station = get_station(conn, station_id)
    return "" if station is None else str(station["name"])


@router.post("/v1/console/login", response_model=SessionPublic, responses=error_responses(*ERR))
def console_login(
    body: LoginIn, request: Request, response: Response, state: AppState = Depends(get_state)
) -> dict[str, Any]:
    """Log a staff member in: the session cookie, and who it is."""
    limits = limits_of(request.app)
    address = _address(request)
    wait = failures_wait(limits, state.settings, address) if limits is not None else None
    if wait is not None:
        raise RateLimited(f"too many failed logins from {address}; retry in {math.ceil(wait)} s", wait)
    now = datetime.now(state.region.tz)
    with state.db.connection() as conn:
        try:
            staff = verify_credentials(conn, body.username, body.password, now=now, address=address)
        except (LoginFailed, AccountLocked):
            record_failure(limits, state.settings, address, body.username)
            raise
        token, expires = start_session(conn, staff, now=now, address=address)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int((expires - now).total_seconds()),
        httponly=True,
        samesite="strict",
        secure=not state.settings.demo_enabled,
        path="/",
    )
    return {
        "staff": _staff_public(staff),
        "station_name": _station_name(state, staff.station_id),
        "expires_at": expires,
    }


def _staff_public(staff: Staff) -> dict[str, Any]:
    return {
        "id": staff.id,
        "station_id": staff.station_id,
        "username": staff.username,
        "display_name": staff.display_name,
        "role": staff.role,
    }


@router.post("/v1/console/logout", status_code=204, responses=error_responses(*ERR))
def console_logout(
    response: Response,
    staff: Staff = Depends(console_staff),
    token: str | None = Security(SESSION_COOKIE),
    state: AppState = Depends(get_state),
) -> Response:
    """End the session (the cookie is cleared)."""
    with state.db.connection() as conn:
        end_session(conn, token or "", staff, now=datetime.now(state.region.tz))
    out = Response(status_code=204)
    out.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return out


@router.get("/v1/console/me", response_model=SessionPublic, responses=error_responses(*READ_ERR))
def console_me(staff: Staff = Depends(console_staff), state: AppState = Depends(get_state)) -> dict[str, Any]:
    """Who is logged in, at which station."""
    return {"staff": _staff_public(staff), "station_name": _station_name(state, staff.station_id)}


@router.post(
    "/v1/console/staff", response_model=StaffPublic, status_code=201, responses=error_responses(*ERR)
)
def create_staff_account(
    body: StaffCreate,
    request: Request,
    token: str | None = Security(SESSION_COOKIE),
    x_api_key: str | None = Security(API_KEY),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """A staff account: operators (API key) create managers and attendants; managers (console session)
    create attendants of their own station."""
    if x_api_key:
        principal = authenticate(request, x_api_key, state)
        creator_role, creator_station, actor = principal.role, None, f"key:{principal.name}"
        if principal.role != "operator":
            raise Forbidden(
                f"key {principal.name!r} ({principal.role}) may not create staff: operator keys only"
            )
    else:
        creator = console_staff(token, state)
        creator_role, creator_station, actor = creator.role, creator.station_id, creator.actor
    why = may_create(
        creator_role, creator_station=creator_station, role=body.role, station_id=body.station_id
    )
    if why is not None:
        raise Forbidden(why)
    with state.db.connection() as conn:
        row = create_staff(
            conn,
            station_id=body.station_id,
            username=body.username,
            display_name=body.display_name,
            role=body.role,
            password=body.password,
            actor=actor,
        )
    return _staff_out(row)


@router.get("/v1/console/staff", response_model=StaffListPublic, responses=error_responses(*READ_ERR))
def station_staff(staff: Staff = Depends(manager), state: AppState = Depends(get_state)) -> dict[str, Any]:
    """The station's staff accounts (managers only)."""
    with state.db.connection() as conn:
        rows = list_staff(conn, staff.station_id)
    return {"station_id": staff.station_id, "staff": [_staff_out(r) for r in rows]}


@router.get("/v1/console/pumps", response_model=ConsolePumpsPublic, responses=error_responses(*READ_ERR))
def console_pumps(
    staff: Staff = Depends(console_staff), state: AppState = Depends(get_state)
) -> dict[str, Any]:
    """The station's pumps, nozzles and live status from the station link ("unknown" when stale)."""
    return pumps_view(state, staff.station_id)


def pumps_view(state: AppState, station_id: int) -> dict[str, Any]:
    """The console's pumps of a station (GET /v1/console/pumps and the live channel)."""
    now = datetime.now(state.region.tz)
    with state.db.connection() as conn:
        pumps = station_pumps(
            conn, station_id, now=now, max_age=timedelta(seconds=state.settings.pump_status_max_age_s)
        )
    return {
        "station_id": station_id,
        "checked_at": now,
        "pumps": [
            {k: p[k] for k in ("pump_no", "label", "status", "fp_state", "reported_at", "nozzles")}
            for p in pumps
        ],
    }


_FILL_UPS_SQL = """
SELECT s.id, s.pump_no, s.nozzle_no, s.grade, s.volume_ml, s.amount_fen, s.unit_price_fen, s.state,
       CASE WHEN EXISTS (SELECT 1 FROM sale_payments sp JOIN payments p USING (out_trade_no)
                          WHERE sp.sale_id = s.id AND p.state = 'paid') THEN 'wechat'
            WHEN s.state = 'cleared' THEN 'station' ELSE 'unpaid' END AS payment,
       s.ended_at
  FROM fcc_sales s
 WHERE s.station_id = %s AND coalesce(s.ended_at, s.first_seen_at) >= %s
 ORDER BY s.id DESC LIMIT %s
"""


@router.get("/v1/console/fill-ups", response_model=FillUpsPublic, responses=error_responses(*READ_ERR))
def todays_fill_ups(
    limit: Annotated[int, Query(ge=1, le=MAX_FILL_UPS)] = 50,
    staff: Staff = Depends(console_staff),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Today's fill-ups at the station, newest first."""
    return fill_ups_view(state, staff.station_id, limit)


def fill_ups_view(state: AppState, station_id: int, limit: int) -> dict[str, Any]:
    """The day's fill-ups of a station (GET /v1/console/fill-ups and the live channel)."""
    now = datetime.now(state.region.tz)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with state.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_FILL_UPS_SQL, (station_id, start, limit)).fetchall()
    return {"station_id": station_id, "business_day": now.date(), "fill_ups": rows}


def _fen(cny: Decimal | None) -> int | None:
    return None if cny is None else int((Decimal(cny) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@router.get("/v1/console/prices", response_model=ConsolePricesPublic, responses=error_responses(*READ_ERR))
def console_prices(
    staff: Staff = Depends(console_staff), state: AppState = Depends(get_state)
) -> dict[str, Any]:
    """The station's prices now per grade, with the official ceiling in force and its notice date, whether
    the ceilings are current (an adjustment window passed after the newest notice: stale), and the
    promotions valid now."""
    now = datetime.now(state.region.tz)
    zone = state.region.price_zone
    with state.db.connection() as conn:
        station = get_station(conn, staff.station_id)
        if station is None:
            raise NotFound(f"station {staff.station_id} not found")
        prices = current_prices(conn, [staff.station_id], now).get(staff.station_id, {})
        grades = sorted(set(station.get("grades") or []) | set(prices))
        ceilings = {g: ceiling_at(conn, zone, g, now) for g in grades}
        promos = promotions_for_stations(conn, [(staff.station_id, station["brand"])], at=now).get(
            staff.station_id, []
        )
        fresh = ceiling_freshness(conn, state.region, now)
    out = []
    for g in grades:
        p, c = prices.get(g), ceilings.get(g)
        out.append(
            {
                "grade": g,
                "price_fen": None if p is None else _fen(p.price_cny),
                "effective_from": None if p is None else p.effective_from,
                "source": None if p is None else p.source,
                "ceiling_fen": None if c is None else _fen(c.max_price_cny),
                "ceiling_effective_from": None if c is None else c.effective_from,
                "ceiling_notice_date": None if c is None else c.adjustment_date,
            }
        )
    return {
        "station_id": staff.station_id,
        "price_zone": zone,
        "grades": out,
        "promotions": [
            {
                "id": p.id,
                "title": p.title,
                "kind": str(p.kind),
                "value": float(p.value),
                "grades": list(p.grades),
            }
            for p in promos
        ],
        "ceiling_status": fresh,
    }


# ---- shifts and handovers ----------------------------------------------------------------------------


def shift_out(shift: dict[str, Any]) -> dict[str, Any]:
    readings = shift["readings"] or {}
    return {
        "id": shift["id"],
        "station_id": shift["station_id"],
        "attendant_id": shift["attendant_id"],
        "state": shift["state"],
        "opened_at": shift["opened_at"],
        "closed_at": shift["closed_at"],
        "nozzles": readings.get("nozzles", []),
        "wechat_fen": readings.get("wechat_fen"),
        "cash_fen": shift["cash_fen"],
        "card_fen": shift["card_fen"],
        "counted_cash_fen": shift["counted_cash_fen"],
        "tolerance_fen": shift["tolerance_fen"],
        "signed_summary": shift["summary"],
        "reconciliation": shift["reconciliation"],
        "corrections": shift["corrections"],
        "outgoing_signed_at": shift["outgoing_signed_at"],
        "incoming_id": shift["incoming_id"],
        "incoming_signed_at": shift["incoming_signed_at"],
        "version": shift["version"],
    }


def _mine(shift: dict[str, Any], staff: Staff) -> dict[str, Any]:
    if shift["station_id"] != staff.station_id:
        raise NotFound(f"shift {shift['id']} not found at station {staff.station_id}")
    return shift_out(shift)


@router.get("/v1/console/shifts", response_model=ShiftListPublic, responses=error_responses(*READ_ERR))
def shifts(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    staff: Staff = Depends(console_staff),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """The station's shifts, newest first."""
    with state.db.connection() as conn:
        return {"shifts": [shift_out(s) for s in list_shifts(conn, staff.station_id, limit=limit)]}


@router.get("/v1/console/shifts/current", response_model=ShiftPublic, responses=error_responses(*READ_ERR))
def current_shift(
    staff: Staff = Depends(console_staff), state: AppState = Depends(get_state)
) -> dict[str, Any]:
    """The running shift (open, or its handover under way)."""
    with state.db.connection() as conn:
        shift = running_shift(conn, staff.station_id)
    if shift is None:
        raise NotFound(f"station {staff.station_id} has no running shift")
    return shift_out(shift)


@router.get("/v1/console/shifts/{shift_id}", response_model=ShiftPublic, responses=error_responses(*READ_ERR))
def one_shift(
    shift_id: ShiftId, staff: Staff = Depends(console_staff), state: AppState = Depends(get_state)
) -> dict[str, Any]:
    with state.db.connection() as conn:
        return _mine(get_shift(conn, shift_id), staff)


@router.post(
    "/v1/console/shifts", response_model=ShiftPublic, status_code=201, responses=error_responses(*ERR)
)
def start_shift(
    staff: Staff = Depends(console_staff), state: AppState = Depends(get_state)
) -> dict[str, Any]:
    """Open the station's first shift (later ones open when the incoming attendant signs a handover)."""
    with state.db.connection() as conn:
        return shift_out(open_shift(conn, staff, at=datetime.now(state.region.tz)))


@router.post(
    "/v1/console/shifts/{shift_id}/close", response_model=ShiftPublic, responses=error_responses(*ERR)
)
def close(
    shift_id: ShiftId, staff: Staff = Depends(console_staff), state: AppState = Depends(get_state)
) -> dict[str, Any]:
    """End the shift: the controller's totaliser readings per nozzle and WeChat's share are taken now."""
    with state.db.connection() as conn:
        return shift_out(close_shift(conn, shift_id, staff, at=datetime.now(state.region.tz)))


@router.post(
    "/v1/console/shifts/{shift_id}/tenders", response_model=ShiftPublic, responses=error_responses(*ERR)
)
def tenders(
    shift_id: ShiftId,
    body: TendersIn,
    staff: Staff = Depends(console_staff),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Cash and card taken as the attendant's records say, and the cash counted in the drawer."""
    with state.db.connection() as conn:
        return shift_out(
            enter_tenders(
                conn,
                shift_id,
                staff,
                cash_fen=body.cash_fen,
                card_fen=body.card_fen,
                counted_cash_fen=body.counted_cash_fen,
                tolerance_fen=body.tolerance_fen,
            )
        )


@router.post(
    "/v1/console/shifts/{shift_id}/sign-outgoing", response_model=ShiftPublic, responses=error_responses(*ERR)
)
def outgoing(
    shift_id: ShiftId, staff: Staff = Depends(console_staff), state: AppState = Depends(get_state)
) -> dict[str, Any]:
    """The outgoing attendant signs the handover."""
    with state.db.connection() as conn:
        return shift_out(sign_outgoing(conn, shift_id, staff, at=datetime.now(state.region.tz)))


@router.post(
    "/v1/console/shifts/{shift_id}/sign-incoming",
    response_model=HandoverSignedPublic,
    responses=error_responses(*ERR),
)
def incoming(
    shift_id: ShiftId,
    body: SignIncomingIn,
    request: Request,
    staff: Staff = Depends(console_staff),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """The incoming attendant signs with their own username and password at the same console: the handover
    is final, and the incoming attendant's shift opens."""
    now = datetime.now(state.region.tz)
    with state.db.connection() as conn:
        other = verify_credentials(conn, body.username, body.password, now=now, address=_address(request))
        if other.station_id != staff.station_id:
            raise Forbidden("the incoming attendant works at another station")
        signed, nxt = sign_incoming(conn, shift_id, other, at=now)
    return {"signed": shift_out(signed), "next_shift": shift_out(nxt)}


@router.post(
    "/v1/console/shifts/{shift_id}/corrections", response_model=ShiftPublic, responses=error_responses(*ERR)
)
def correct(
    shift_id: ShiftId,
    body: CorrectionIn,
    staff: Staff = Depends(manager),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """A correction entry on a signed handover (managers): audited; the signed figures stay."""
    with state.db.connection() as conn:
        return shift_out(
            add_correction(
                conn, shift_id, staff, field=body.field, delta_fen=body.delta_fen, reason=body.reason
            )
        )


# ---- reports and the daily close ---------------------------------------------------------------------

_HEADERS = {
    "zh": {"key": "项目", "sales": "笔数", "litres": "升数", "amount": "金额(元)"},
    "en": {"key": "item", "sales": "sales", "litres": "litres", "amount": "amount (CNY)"},
}


def _table(rows: list[dict[str, Any]], by: str, lang: str) -> tuple[list[str], list[list[Any]]]:
    h = _HEADERS[lang]
    head = [f"{h['key']} ({by})", h["sales"], h["litres"], h["amount"]]
    body = [
        [r["key"], r["sales"], Decimal(r["volume_ml"]) / 1000, Decimal(r["amount_fen"]) / 100] for r in rows
    ]
    return head, body


def _xlsx(head: list[str], body: list[list[Any]], title: str) -> bytes:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = title[:31]
    ws.append(head)
    for row in body:
        ws.append([row[0], row[1], float(row[2]), float(row[3])])
    for col, fmt in (("C", "0.000"), ("D", "0.00")):
        for cell in ws[col][1:]:
            cell.number_format = fmt
    ws.column_dimensions["A"].width = 18
    if body:
        chart = BarChart()
        chart.title = head[3]
        chart.add_data(Reference(ws, min_col=4, min_row=1, max_row=len(body) + 1), titles_from_data=True)
        chart.set_categories(Reference(ws, min_col=1, min_row=2, max_row=len(body) + 1))
        ws.add_chart(chart, "F2")
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


@router.get(
    "/v1/console/reports/sales",
    response_model=SalesReportPublic,
    responses={
        **error_responses(*READ_ERR),
        200: {
            "content": {
                "text/csv": {},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {},
            },
            "description": "JSON, or CSV / .xlsx with format=csv|xlsx",
        },
    },
)
def sales_by(
    by: Annotated[Literal["day", "shift", "grade", "nozzle", "attendant", "payment"], Query()] = "grade",
    first: Annotated[date | None, Query(description="first business day (default today)")] = None,
    last: Annotated[date | None, Query(description="last business day (default first)")] = None,
    format: Annotated[Literal["json", "csv", "xlsx"], Query()] = "json",
    lang: Annotated[Literal["zh", "en"], Query()] = "zh",
    staff: Staff = Depends(manager),
    state: AppState = Depends(get_state),
) -> Any:
    """The station's sales by day, shift, grade, nozzle, attendant or payment method over at most 92
    business days; CSV (UTF-8 with BOM, for Excel) or .xlsx on request. Managers only."""
    tz = state.region.tz
    first = first or datetime.now(tz).date()
    last = last or first
    with state.db.connection() as conn:
        rows = sales_report(conn, staff.station_id, by=by, first=first, last=last, tz=tz)
    if format == "json":
        return {"station_id": staff.station_id, "by": by, "first": first, "last": last, "rows": rows}
    head, body = _table(rows, by, lang)
    name = f"sales-{staff.station_id}-{by}-{first}-{last}"
    if format == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(head)
        w.writerows([[r[0], r[1], f"{r[2]:.3f}", f"{r[3]:.2f}"] for r in body])
        return Response(
            ("\ufeff" + buf.getvalue()).encode("utf-8"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return Response(
        _xlsx(head, body, by),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
    )


@router.post(
    "/v1/console/daily-closes",
    response_model=DailyClosePublic,
    status_code=201,
    responses=error_responses(*ERR),
)
def daily_close(
    body: DailyCloseIn, staff: Staff = Depends(manager), state: AppState = Depends(get_state)
) -> dict[str, Any]:
    """Close a business day (日结): its totals by grade and payment and its shifts, stored once."""
    with state.db.connection() as conn:
        return close_day(
            conn,
            staff.station_id,
            body.business_day,
            tz=state.region.tz,
            now=datetime.now(state.region.tz),
            actor=staff.actor,
        )


@router.get(
    "/v1/console/daily-closes/{business_day}",
    response_model=DailyClosePublic,
    responses=error_responses(*READ_ERR),
)
def daily_close_of(
    business_day: Annotated[date, Path()],
    staff: Staff = Depends(manager),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    with state.db.connection() as conn:
        row = get_close(conn, staff.station_id, business_day)
    if row is None:
        raise NotFound(f"{business_day} is not closed at station {staff.station_id}")
    return row
