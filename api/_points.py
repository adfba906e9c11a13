"""The user's points: `GET /v1/me/points` (user token) answers the balance, the unexpired points a
payment can redeem now, the redemptions held for open orders, the points expiring within
`expiring_days` (by date) and the account's history, newest first, paged with `cursor`/`next_cursor`.
Points are redeemed at pay (`redeem_points` on the pay endpoints, api/_payments.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api._models import PointsPublic, error_responses
from api._state import AppState, get_state
from api._users import CurrentUser
from config import load_loyalty_rules
from store import _ledger

router = APIRouter(tags=["points"])


@router.get(
    "/v1/me/points", response_model=PointsPublic, responses=error_responses(401, 422, 429, 503, user=True)
)
def my_points(
    user: CurrentUser,
    state: AppState = Depends(get_state),
    cursor: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="history entries per page")] = 20,
    expiring_days: Annotated[int, Query(ge=1, le=366, description="how far ahead 'expiring' looks")] = 30,
) -> dict[str, Any]:
    """The caller's points balance, pending holds, points expiring soon and history."""
    tz = state.region.tz
    now = datetime.now(tz)
    rules = load_loyalty_rules().redemption
    with state.db.connection() as conn:
        s = _ledger.summary(conn, user.id, now=now, soon_until=now + timedelta(days=expiring_days))
        rows = _ledger.history(conn, user.id, before_id=cursor, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "balance": s["balance"],
        "redeemable": s["redeemable"],
        "unit_points": rules.unit_points,
        "unit_fen": rules.unit_fen,
        "pending": [{**h, "held_at": h["held_at"].astimezone(tz).isoformat()} for h in s["pending"]],
        "expiring": [
            {"expires_at": e["expires_at"].astimezone(tz).isoformat(), "points": e["points"]}
            for e in s["expiring"]
        ],
        "history": [
            {
                "id": r["id"],
                "kind": r["kind"],
                "points": r["amount"],
                "balance": r["balance"],
                "out_trade_no": r["out_trade_no"],
                "at": r["created_at"].astimezone(tz).isoformat(),
            }
            for r in rows
        ],
        "next_cursor": rows[-1]["id"] if more and rows else None,
    }
