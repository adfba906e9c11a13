"""Where the API asks risk control: at bind (api/_fuelling.py) and at pay (payments/_sale.py through the
`screen` callable). Each builds the facts, evaluates and logs in its own transaction (the decision stays
on record even when it refuses), then enforces: deny -> 403 RiskDenied, review -> 403 RiskHeld."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg
import redis
from fastapi import Request

import risk
from api._state import AppState
from store import _ledger
from store import _sale_payments as sp
from store._nozzles import Nozzle
from store._risk import tuple_cursor
from store._users import User
from wechat import WeChatError, user_risk_rank

log = logging.getLogger("api.risk")
_lock = threading.Lock()
HOUR, DAY = 3600, 86_400


def risk_redis(state: AppState) -> Any:
    """The process's Redis client for velocity windows (short timeouts: risk never waits long on Redis)."""
    with _lock:
        client = state.extras.get("risk_redis")
        if client is None:
            client = state.extras["risk_redis"] = redis.Redis.from_url(
                state.settings.redis_url, socket_timeout=0.25, socket_connect_timeout=0.25
            )
        return client


def _hash(state: AppState, subject: str, value: str) -> str:
    return risk.keyed_hash(state.settings.secret_key, subject, value)


def wechat_rank(state: AppState, user: User, request: Request) -> int | None:
    """WeChat's risk rank of the user (getuserriskrank), when FUEL_RISK_WECHAT_RANK is on and WeChat
    answers; None otherwise (the rank rules then do not fire)."""
    client = state.extras.get("wechat")
    if not state.settings.risk_wechat_rank or client is None:
        return None
    try:
        return user_risk_rank(client, user.openid, client_ip=request.client.host if request.client else "")
    except WeChatError as exc:
        log.warning("no WeChat risk rank for user %s: %s", user.id, exc)
        return None


def check_bind(
    state: AppState,
    user: User,
    nozzle: Nozzle,
    *,
    device_fingerprint: str | None,
    vehicle_class: str | None,
    wechat_risk_rank: int | None = None,
) -> risk.Decision:
    """Evaluate the `bind` rules for this user at this nozzle (RiskDenied, RiskHeld)."""
    now = datetime.now(state.region.tz)
    user_h = _hash(state, "user", str(user.id))
    nozzle_ref = f"{nozzle.station_id}.{nozzle.pump_no}.{nozzle.nozzle_no}"
    windows = [
        risk.Window("user_binds_1h", user_h, HOUR),
        risk.Window("nozzle_users_30m", nozzle_ref, 1800, member=str(user.id)),
    ]
    hashes = {"user": user_h, "station": _hash(state, "station", str(nozzle.station_id))}
    subject: dict[str, Any] = {"user_id": user.id, "station_id": nozzle.station_id, "nozzle": nozzle_ref}
    facts: dict[str, Any] = {"unusual_hour": risk.unusual_hour(now, state.region.tz)}
    if device_fingerprint is not None:
        device_h = _hash(state, "device", device_fingerprint)
        windows += [
            risk.Window("device_binds_1h", device_h, HOUR),
            risk.Window("device_users_1d", device_h, DAY, member=str(user.id)),
        ]
        hashes["device"] = subject["device"] = device_h
    if vehicle_class is not None:
        subject["vehicle_class"] = facts["vehicle_class"] = vehicle_class
    if wechat_risk_rank is not None:
        facts["wechat_risk_rank"] = wechat_risk_rank
    with state.db.transaction() as conn:
        d = risk.evaluate(
            conn,
            "bind",
            facts,
            subject=subject,
            hashes=hashes,
            redis=risk_redis(state),
            namespace=f"{state.settings.rate_limit_prefix}:",
            windows=windows,
            approved_keys=("user_id", "nozzle"),
        )
    return risk.enforce(d)


def pay_screen(state: AppState, user: User, *, redeem_points: int = 0) -> Callable[[sp.Sale], None]:
    """The `screen` payments/_sale.py calls before LOCKTX: evaluates the `pay` rules for this sale and,
    when the request redeems points, then the `redeem` rules (see redeem_decision)."""

    def screen(sale: sp.Sale) -> None:
        user_h = _hash(state, "user", str(user.id))
        payer_h = _hash(state, "payer", user.openid)
        delta = (
            None
            if sale.totaliser_start_ml is None or sale.totaliser_end_ml is None
            else sale.totaliser_end_ml - sale.totaliser_start_ml
        )
        at = sale.ended_at or sale.first_seen_at
        with state.db.transaction() as conn:
            row = (
                tuple_cursor(conn)
                .execute(
                    "SELECT subject ->> 'vehicle_class', subject ->> 'device' FROM risk_decisions"
                    " WHERE point = 'bind'"
                    " AND subject @> jsonb_build_object('user_id', %s::bigint) ORDER BY id DESC LIMIT 1",
                    (user.id,),
                )
                .fetchone()
            )
            vehicle_class, device_h = (row[0], row[1]) if row is not None else (None, None)
            facts: dict[str, Any] = {
                "amount_fen": sale.amount_fen,
                "volume_ml": sale.volume_ml,
                "totaliser_delta_ml": delta,
                "litres": sale.volume_ml / 1000,
                "vehicle_class": vehicle_class,
                "tank_litres": risk.tank_litres(vehicle_class),
                "unusual_hour": risk.unusual_hour(at, state.region.tz),
            }
            windows = [
                risk.Window("payer_pays_1h", payer_h, HOUR, member=str(sale.id)),
                risk.Window("station_pays_10m", str(sale.station_id), 600, member=str(sale.id)),
            ]
            d = risk.evaluate(
                conn,
                "pay",
                facts,
                subject={"user_id": user.id, "sale_id": sale.id, "station_id": sale.station_id},
                hashes={
                    "user": user_h,
                    "payer": payer_h,
                    "station": _hash(state, "station", str(sale.station_id)),
                },
                redis=risk_redis(state),
                namespace=f"{state.settings.rate_limit_prefix}:",
                windows=windows,
                approved_keys=("sale_id", "user_id"),
            )
        risk.enforce(d)
        if redeem_points > 0:
            with state.db.transaction() as conn:
                r = redeem_decision(state, conn, user, sale, points=redeem_points, device_h=device_h)
            risk.enforce(r)

    return screen


def redeem_decision(
    state: AppState,
    conn: psycopg.Connection,
    user: User,
    sale: sp.Sale,
    *,
    points: int,
    device_h: str | None,
) -> risk.Decision:
    """The `redeem` rules for redeeming `points` on this sale: redemptions per user and device per local
    day (velocity windows keyed by the sale, so a retry counts once) and the points the user redeemed
    today, this request included (the ledger's holds). Logged in `conn`'s transaction."""
    now = datetime.now(state.region.tz)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    user_h = _hash(state, "user", str(user.id))
    today = _ledger.redeemed_on_day(conn, user.id, day_start=day_start, day_end=day_start + timedelta(days=1))
    facts = {"redeem_points": points, "user_points_redeemed_1d": today + points}
    subject: dict[str, Any] = {"user_id": user.id, "sale_id": sale.id, "station_id": sale.station_id}
    hashes = {"user": user_h, "station": _hash(state, "station", str(sale.station_id))}
    if device_h is not None:
        hashes["device"] = subject["device"] = device_h
    windows = risk.redeem_windows(
        user=user_h,
        device=device_h,
        plate=None,
        day=day_start.date().isoformat(),
        kind="point_redemptions",
        event=str(sale.id),
    )
    return risk.evaluate(
        conn,
        "redeem",
        facts,
        subject=subject,
        hashes=hashes,
        redis=risk_redis(state),
        namespace=f"{state.settings.rate_limit_prefix}:",
        windows=windows,
        approved_keys=("sale_id", "user_id"),
    )
