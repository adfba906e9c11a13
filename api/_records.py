"""The driver's own records, membership and account (user token, `current_user`):

- `GET /v1/me/records`: the caller's paid fill-ups newest first, `limit` 1-100 (default 20), filters
  `from`/`to` (local dates, inclusive) and `station_id`, and an opaque `cursor` (the answer's
  `next_cursor`) for the next page.
- `GET /v1/me/records/{id}`: one record (404 for an unknown id or another user's).
- `GET /v1/me/records.csv`: the same records as CSV (UTF-8 with a BOM, so Excel shows the Chinese
  headers), at most MAX_CSV_ROWS, default range the last 12 months.
- `GET /v1/me/records/summary?from=YYYY-MM&to=YYYY-MM`: per month (at most 24): litres, spend, average
  price paid per litre against the average list price nearby, L/100 km from odometer readings.
- `PUT /v1/me/records/{id}/odometer` {"odometer_km"}: the odometer at that fill-up (null removes it),
  monotonic per user (422 naming the allowed range), audited.
- `GET /v1/me/membership`: the tier from the last 12 months' spend, the next tier and its threshold.
- `DELETE /v1/me`: delete the account (store._users.delete_account): tokens stop working at once.
"""

from __future__ import annotations

import base64
import csv
import io
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from api._me_models import AccountDeleted, MembershipPublic, RecordPublic, RecordsPage, SummaryPublic
from api._models import error_responses
from api._state import AppState, get_state
from api._users import CurrentUser
from geo import InvalidInput
from store import _membership, _records
from store._membership import Tier
from store._records import Record
from store._users import delete_account

router = APIRouter(tags=["records"])

MAX_PAGE = 100
MAX_CSV_ROWS = 5_000
MAX_RANGE_DAYS = 3 * 366
RecordId = Annotated[int, Path(ge=1, le=2**63 - 1, description="record id")]
FromQ = Annotated[date | None, Query(alias="from", description="first local date (Asia/Shanghai), inclusive")]
ToQ = Annotated[date | None, Query(alias="to", description="last local date (Asia/Shanghai), inclusive")]
StationQ = Annotated[int | None, Query(ge=1, le=2**63 - 1, description="only fill-ups at this station")]
MonthQ = Annotated[str | None, Query(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")]
_USER_READ = error_responses(401, 422, 429, 503, user=True)


def _iso(at: datetime | None, state: AppState) -> str | None:
    return None if at is None else at.astimezone(state.region.tz).isoformat()


def _record_out(r: Record, state: AppState) -> dict[str, Any]:
    promotions = (
        []
        if r.promotion_id is None
        else [
            {
                "id": r.promotion_id,
                "title": r.promotion_title or "",
                "title_en": r.promotion_title_en,
                "kind": r.promotion_kind or "",
                "discount_fen": r.discount_fen,
            }
        ]
    )
    l100, fen_km = r.l_per_100km, r.fen_per_km
    return {
        "id": r.id,
        "paid_at": _iso(r.paid_at, state),
        "fuelled_at": _iso(r.ended_at, state),
        "station_id": r.station_id,
        "station_name": r.station_name,
        "station_name_en": r.station_name_en,
        "station_brand": r.station_brand,
        "pump_no": r.pump_no,
        "nozzle_no": r.nozzle_no,
        "grade": r.grade,
        "litres": float(r.litres),
        "unit_price_fen": r.unit_price_fen,
        "list_amount_fen": r.list_amount_fen,
        "promotions": promotions,
        "amount_paid_fen": r.paid_fen,
        "refunded_fen": r.refunded_fen,
        "wechat_transaction_id": r.transaction_id,
        "invoice_status": r.invoice_status,
        "receipt": {"trace_no": r.site_tx_id, "terminal": r.terminal, "receipt_no": r.out_trade_no},
        "points_earned": r.points_earned,
        "points_redeemed": r.points_redeemed,
        "redemption_fen": r.redemption_fen,
        "points_reversed": r.points_reversed,
        "points_returned": r.points_returned,
        "odometer_km": r.odometer_km,
        "distance_km": r.distance_km,
        "l_per_100km": None if l100 is None else float(l100),
        "fen_per_km": None if fen_km is None else float(fen_km),
    }


def _range(
    since: date | None, until: date | None, state: AppState
) -> tuple[datetime | None, datetime | None]:
    """[from 00:00, the day after `to` 00:00) in the region's time zone; 422 when it runs backwards."""
    if since is not None and until is not None:
        if until < since:
            raise InvalidInput("to", f"{until} is before from={since}")
        if (until - since).days > MAX_RANGE_DAYS:
            raise InvalidInput("to", f"a range spans at most {MAX_RANGE_DAYS} days")
    tz = state.region.tz
    return (
        None if since is None else datetime.combine(since, time(0), tz),
        None if until is None else datetime.combine(until + timedelta(days=1), time(0), tz),
    )


def _encode_cursor(r: Record) -> str:
    raw = f"{int(r.paid_at.timestamp() * 1_000_000)}.{r.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(value: str, state: AppState) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
        micros, _, rid = raw.partition(".")
        at = datetime.fromtimestamp(int(micros) / 1_000_000, state.region.tz)
        return at, int(rid)
    except (ValueError, UnicodeDecodeError, OverflowError, OSError):
        raise InvalidInput("cursor", "not a cursor this service gave: pass next_cursor unchanged") from None


@router.get("/v1/me/records", response_model=RecordsPage, responses=_USER_READ)
def my_records(
    user: CurrentUser,
    since: FromQ = None,
    until: ToQ = None,
    station_id: StationQ = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="records per page")] = 20,
    cursor: Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """The caller's paid fill-ups, newest first (e-records for expenses)."""
    lo, hi = _range(since, until, state)
    after = None if cursor is None else _decode_cursor(cursor, state)
    with state.db.connection() as conn:
        rows = _records.records_page(
            conn, user.id, limit=limit + 1, since=lo, until=hi, station_id=station_id, after=after
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "records": [_record_out(r, state) for r in rows],
        "next_cursor": _encode_cursor(rows[-1]) if more else None,
    }


CSV_COLUMNS = (
    ("记录号 record", lambda r: r.id),
    ("支付时间 paid at", None),
    ("加油站 station", lambda r: r.station_name),
    ("油枪 pump-nozzle", lambda r: r.terminal),
    ("油品 grade", lambda r: f"{r.grade}#"),
    ("升数 litres", lambda r: f"{r.litres:.3f}"),
    ("单价 unit price (CNY/L)", lambda r: f"{Decimal(r.unit_price_fen) / 100:.2f}"),
    ("原价 list amount (CNY)", lambda r: f"{Decimal(r.list_amount_fen) / 100:.2f}"),
    ("优惠 promotion", lambda r: r.promotion_title or ""),
    ("优惠金额 discount (CNY)", lambda r: f"{Decimal(r.discount_fen) / 100:.2f}"),
    ("积分抵扣 points redeemed", lambda r: r.points_redeemed),
    ("积分抵扣金额 points off (CNY)", lambda r: f"{Decimal(r.redemption_fen) / 100:.2f}"),
    ("实付 paid (CNY)", lambda r: f"{Decimal(r.paid_fen) / 100:.2f}"),
    ("获得积分 points earned", lambda r: r.points_earned),
    ("退款 refunded (CNY)", lambda r: f"{Decimal(r.refunded_fen) / 100:.2f}"),
    ("退款收回积分 points reversed", lambda r: r.points_reversed),
    ("退款退回积分 points returned", lambda r: r.points_returned),
    ("微信支付单号 WeChat transaction", lambda r: r.transaction_id),
    ("流水号 trace no", lambda r: r.site_tx_id),
    ("小票号 receipt no", lambda r: r.out_trade_no),
    ("发票 invoice", lambda r: r.invoice_status or ""),
    ("里程 odometer (km)", lambda r: "" if r.odometer_km is None else r.odometer_km),
    ("百公里油耗 L/100km", lambda r: "" if r.l_per_100km is None else f"{r.l_per_100km}"),
)


@router.get(
    "/v1/me/records.csv",
    response_class=Response,
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "UTF-8 CSV with a BOM"},
        **_USER_READ,
    },
)
def my_records_csv(
    user: CurrentUser,
    since: FromQ = None,
    until: ToQ = None,
    station_id: StationQ = None,
    state: AppState = Depends(get_state),
) -> Response:
    """The caller's records as CSV for a spreadsheet (default: the last 12 months; at most 5,000 rows)."""
    today = datetime.now(state.region.tz).date()
    if since is None and until is None:
        since = today - timedelta(days=365)
    lo, hi = _range(since, until, state)
    with state.db.connection() as conn:
        rows = _records.records_page(
            conn, user.id, limit=MAX_CSV_ROWS, since=lo, until=hi, station_id=station_id
        )
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow([name for name, _ in CSV_COLUMNS])
    for r in rows:
        w.writerow([_iso(r.paid_at, state) if get is None else get(r) for _, get in CSV_COLUMNS])
    name = f"fuel-records-{today.isoformat()}.csv"
    return Response(
        content="\ufeff" + out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _month_start(value: str, tz: Any) -> datetime:
    y, m = (int(x) for x in value.split("-"))
    return datetime(y, m, 1, tzinfo=tz)


def _next_month(at: datetime) -> datetime:
    return at.replace(year=at.year + (at.month == 12), month=at.month % 12 + 1)


@router.get("/v1/me/records/summary", response_model=SummaryPublic, responses=_USER_READ)
def my_summary(
    user: CurrentUser,
    since: Annotated[MonthQ, Query(alias="from")] = None,
    until: Annotated[MonthQ, Query(alias="to")] = None,
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Per month (at most 24; default the last 12 up to this one): litres, spend, the average price paid
    against the average list price of nearby stations, L/100 km where odometer readings allow."""
    tz = state.region.tz
    now = datetime.now(tz)
    end = _month_start(until, tz) if until else now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = _month_start(since, tz) if since else end.replace(year=end.year - 1)
    if not since:
        start = _next_month(start)
    if end < start:
        raise InvalidInput("to", f"{until} is before from={since}")
    months = (end.year - start.year) * 12 + end.month - start.month + 1
    if months > _records.MAX_MONTHS:
        raise InvalidInput(
            "from", f"a summary spans at most {_records.MAX_MONTHS} months, this asks {months}"
        )
    with state.db.connection() as conn:
        rows = _records.monthly_summary(conn, user.id, since=start, until=_next_month(end), tz=str(tz))
    out = []
    for m in rows:
        saving = (
            m.avg_nearby_list_fen_per_litre - m.avg_paid_fen_per_litre
            if m.avg_nearby_list_fen_per_litre is not None and m.avg_paid_fen_per_litre is not None
            else None
        )
        out.append(
            {
                "month": m.month,
                "fillups": m.fillups,
                "litres": m.volume_ml / 1000,
                "spend_fen": m.spend_fen,
                "list_amount_fen": m.list_amount_fen,
                "avg_paid_fen_per_litre": m.avg_paid_fen_per_litre,
                "avg_nearby_list_fen_per_litre": m.avg_nearby_list_fen_per_litre,
                "saving_vs_nearby_fen_per_litre": saving,
                "distance_km": m.distance_km,
                "l_per_100km": None if m.l_per_100km is None else float(m.l_per_100km),
            }
        )
    return {
        "months": out,
        "litres": sum(m.volume_ml for m in rows) / 1000,
        "spend_fen": sum(m.spend_fen for m in rows),
    }


@router.get(
    "/v1/me/records/{record_id}",
    response_model=RecordPublic,
    responses=error_responses(401, 404, 422, 429, 503, user=True),
)
def my_record(record_id: RecordId, user: CurrentUser, state: AppState = Depends(get_state)) -> dict[str, Any]:
    """One of the caller's records (404 for an unknown id or another user's)."""
    with state.db.connection() as conn:
        return _record_out(_records.get_record(conn, user.id, record_id), state)


class OdometerUpdate(BaseModel):
    """The odometer at this fill-up, in whole km (null removes the reading)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"odometer_km": 48_210}]})
    odometer_km: int | None = Field(ge=0, le=2_000_000)


@router.put(
    "/v1/me/records/{record_id}/odometer",
    response_model=RecordPublic,
    responses=error_responses(400, 401, 404, 413, 422, 429, 503, user=True),
)
def put_odometer(
    record_id: RecordId, body: OdometerUpdate, user: CurrentUser, state: AppState = Depends(get_state)
) -> dict[str, Any]:
    """Record the odometer at a fill-up: readings never go backwards in time (422 names the allowed range);
    two readings give L/100 km and cost per km."""
    with state.db.connection() as conn:
        rec = _records.set_odometer(conn, user.id, record_id, body.odometer_km, actor=f"user:{user.id}")
    return _record_out(rec, state)


def _tier_out(t: Tier) -> dict[str, Any]:
    return {
        "code": t.code,
        "name": t.name,
        "name_en": t.name_en,
        "min_spend_fen": t.min_spend_fen,
        "earn_multiplier": float(t.earn_multiplier),
    }


@router.get(
    "/v1/me/membership", response_model=MembershipPublic, responses=error_responses(401, 429, 503, user=True)
)
def my_membership(user: CurrentUser, state: AppState = Depends(get_state)) -> dict[str, Any]:
    """The caller's membership tier (from the last 12 months' spend), the next tier and how far it is."""
    with state.db.connection() as conn:
        m = _membership.membership(conn, user.id)
        all_tiers = _membership.tiers(conn)
    return {
        "tier": _tier_out(m.tier),
        "spend_12m_fen": m.spend_fen,
        "next_tier": None if m.next_tier is None else _tier_out(m.next_tier),
        "to_next_tier_fen": None if m.next_tier is None else m.next_tier.min_spend_fen - m.spend_fen,
        "tiers": [_tier_out(t) for t in all_tiers],
    }


@router.delete("/v1/me", response_model=AccountDeleted, responses=error_responses(401, 429, 503, user=True))
def delete_me(user: CurrentUser, state: AppState = Depends(get_state)) -> dict[str, Any]:
    """Delete the caller's account: personal data removed (WeChat ids, phone, odometer readings), paid
    records kept anonymised as accounting law requires; the session token stops working at once."""
    with state.db.connection() as conn:
        counts = delete_account(conn, user.id, actor=f"user:{user.id}")
    return {"deleted": bool(counts["deleted"]), "records_kept": counts["payments"]}
