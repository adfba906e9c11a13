"""Member pricing: the price a driver sees in the ranking is the price the driver pays. Every demo promotion
(ingest/_demo.py, re-timed so its day, time and holiday conditions hold now) plus a member-tier promotion
(min_tier) is stored through the promotions' one write path; a basic and a silver member each fill up where
it applies, ask the ranking (`GET /v1/stations/nearby` with their session token) and pay (the real payment
stack): the promotion and the saving agree, fen for fen."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from config import load_region
from geo._pricing import Promotion
from ingest._demo import _demo_promotions
from ingest._guidance import load_guidance_file
from store._membership import membership
from store._promotions import upsert_promotion
from tests._forecourt import SimProcess
from tests._payments import wait_for
from tests._risk import switch_off
from tests._sale_pay import PayStack

pytestmark = pytest.mark.slow  # real processes

REGION = load_region("lijiang")
SIM_PRICES = {"92": "7.65", "95": "8.18", "0": "7.40"}  # the simulated site's unit prices (forecourt)
GRADE_NOZZLE = {"92": 1, "95": 2, "0": 3}  # seed_station: nozzle n sells grades[n - 1]
LITRES = "30"  # over the 200 CNY of the order promotion


@pytest.fixture(scope="module")
def stack(module_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PayStack]:
    # the silver member is made by one 300 L fill-up (a fleet truck's), and each member then pays every
    # demo promotion within minutes: risk control would hold or refuse that (amount, tank and payer-velocity
    # rules); this module tests pricing, so those rules are off in its database
    switch_off(
        module_db,
        "pay.amount_review",
        "pay.over_tank_review",
        "pay.over_tank_deny",
        "pay.payer_velocity",
        "pay.payer_velocity_deny",
    )
    with PayStack(module_db, tmp_path_factory.mktemp("wechatpay-keys")) as s:
        yield s


def _now_holds(p: Promotion, now: datetime) -> Promotion:
    """The promotion with its day, time-of-day and holiday conditions moved to hold at `now` (local)."""
    changes: dict[str, Any] = {}
    if p.days_of_week:
        changes["days_of_week"] = (now.isoweekday(),)
    if p.time_from is not None or p.time_to is not None:
        start = (now - timedelta(hours=1)).time().replace(second=0, microsecond=0)
        end = (now + timedelta(hours=1)).time().replace(second=0, microsecond=0)
        changes["time_from"], changes["time_to"] = start, end
    if p.public_holidays_only:
        changes["public_holidays_only"] = False
        changes["date_ranges"] = ((now.date() - timedelta(days=1), now.date() + timedelta(days=1)),)
    return dataclasses.replace(p, **changes)


@pytest.fixture(scope="module")
def world(stack: PayStack, shared_data: Path) -> dict[str, Any]:
    sites = [stack.site(pumps=2) for _ in range(3)]  # the demo picks four: the last two share one
    now = datetime.now(REGION.tz)
    with psycopg.connect(stack.db_url) as conn:
        # the official ceilings bound a promotion's discount (its plausibility check)
        load_guidance_file(
            conn,
            shared_data / "prices" / "yunnan_guidance_prices.json",
            actor="test-setup",
            zone=REGION.price_zone,
        )
        for s in sites:
            for grade, price in SIM_PRICES.items():
                conn.execute(
                    "INSERT INTO prices (station_id, grade, price_cny, effective_from, source)"
                    " VALUES (%s, %s, %s, now() - interval '1 day', 'station')",
                    (s.station, grade, Decimal(price)),
                )
        stations = [{"id": s.station, "brand": "sinopec"} for s in sites]
        promos = [_now_holds(p, now) for p in _demo_promotions(stations, seed=7, tz_now=now)]
        promos.append(
            Promotion(
                kind="cny_off_per_litre",
                value=Decimal("0.50"),
                scope="station",
                station_id=sites[1].station,
                title="银卡及以上会员92#每升优惠0.50元",
                title_en="Silver members and above: 0.50 CNY/L off 92#",
                grades=("92",),
                min_tier="silver",
                source="station",
                source_ref="test:silver-92",
                valid_from=now - timedelta(days=1),
            )
        )
        stored = []
        for p in promos:
            pid, _ = upsert_promotion(conn, p, actor="test", zone=REGION.price_zone, replace=False)
            stored.append(dataclasses.replace(p, id=pid))
        conn.commit()
    # a silver member: over 2,000 CNY paid in the last 12 months (one big fill-up, paid)
    silver_user, silver = stack.user()
    sale = stack.fuel(sites[0], 2, "300", nozzle=2)  # 2,454 CNY before any promotion
    body = stack.pay(sale, silver, str(uuid.uuid4())).json()
    assert stack.wx_pay(body)[0] == 200
    wait_for(lambda: stack.payment(body["out_trade_no"])["state"] == "paid", timeout_s=30, what="paid")
    with psycopg.connect(stack.db_url) as conn:
        assert membership(conn, silver_user.id).tier.code == "silver"
    _, basic = stack.user()
    return {"sites": {s.station: s for s in sites}, "promotions": stored, "silver": silver, "basic": basic}


def ranked(stack: PayStack, token: str, station: int, grade: str) -> dict[str, Any]:
    """The station's grade as the ranking prices it for this driver."""
    assert stack.api is not None
    r = httpx.get(
        f"{stack.api.base}/v1/stations/nearby",
        params={
            "lat": 26.87,
            "lon": 100.23,
            "radius_m": 2000,
            "grade": grade,
            "sort": "effective_price",
            "litres": LITRES,
            "payment": "wechat",
            "limit": 50,
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    found = [s for s in r.json()["results"] if s["id"] == station]
    assert found, f"station {station} not ranked"
    grades: dict[str, Any] = found[0]["grades"]
    return dict(grades[grade])


def paid(stack: PayStack, site: SimProcess, pump: int, grade: str, token: str) -> dict[str, Any]:
    sale = stack.fuel(site, pump, LITRES, nozzle=GRADE_NOZZLE[grade])
    r = stack.pay(sale, token, str(uuid.uuid4()))
    assert r.status_code == 200, r.text
    body = r.json()
    assert stack.wx_pay(body)[0] == 200  # pay it: the pump takes new fill-ups
    wait_for(lambda: stack.payment(body["out_trade_no"])["state"] == "paid", timeout_s=30, what="paid")
    promo = stack.sql("SELECT promotion_id FROM sale_payments WHERE out_trade_no = %s", body["out_trade_no"])
    return {**body, "promotion_id": promo[0][0]}


def test_the_ranked_price_is_the_price_paid_for_every_promotion(
    stack: PayStack, world: dict[str, Any]
) -> None:
    compared = []
    evening = next(p for p in world["promotions"] if p.source_ref == "demo:evening")
    for promo in world["promotions"]:
        # a brand promotion: at the station whose own promotion it beats; no grade named: diesel, which no
        # grade-bound promotion covers
        target = promo.station_id or evening.station_id
        assert target is not None
        site = world["sites"][target]
        grade = promo.grades[0] if promo.grades else "0"
        for who in ("basic", "silver"):
            token = world[who]
            seen = ranked(stack, token, target, grade)
            got = paid(stack, site, 1, grade, token)
            applied = seen["promotions_applied"]
            saving_fen = (
                int((Decimal(str(applied[0]["saving_total"])) * 100).quantize(Decimal(1), ROUND_HALF_UP))
                if applied
                else 0
            )
            assert got["promotion_id"] == (applied[0]["id"] if applied else None), (promo.title_en, who, seen)
            assert got["discount_fen"] == saving_fen, (promo.title_en, who, seen, got)
            assert got["amount_fen"] == got["sale_amount_fen"] - saving_fen
            list_fen = int(Decimal(SIM_PRICES[grade]) * Decimal(LITRES) * 100)
            assert got["sale_amount_fen"] == list_fen and seen["list_price"] == float(SIM_PRICES[grade])
            compared.append((promo.source_ref, who, got["promotion_id"]))
    # the conditions held: every promotion was applied (where it is the best), the tier one for silver only
    by_ref = {p.source_ref: p.id for p in world["promotions"]}
    applied_ids = {pid for _, _, pid in compared}
    assert set(by_ref.values()) <= applied_ids
    assert ("test:silver-92", "basic", by_ref["test:silver-92"]) not in compared
    assert ("demo:members", "basic", by_ref["demo:members"]) in compared  # holding any tier is a member
    assert ("demo:members", "silver", by_ref["demo:members"]) in compared


def test_a_bad_token_on_the_ranking_is_401_and_none_is_the_public_price(
    stack: PayStack, world: dict[str, Any]
) -> None:
    assert stack.api is not None
    url = f"{stack.api.base}/v1/stations/nearby"
    params = {"lat": 26.87, "lon": 100.23, "radius_m": 2000, "grade": "92", "litres": LITRES}
    bad = httpx.get(url, params=params, headers={"Authorization": "Bearer nope"}, timeout=30)
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer", bad.text
    # the token is judged before the query, and another scheme than Bearer is no session token
    worse = httpx.get(
        url, params={**params, "limit": "x"}, headers={"Authorization": "Bearer nope"}, timeout=30
    )
    assert worse.status_code == 401, worse.text
    basic = httpx.get(url, params=params, headers={"Authorization": "Basic bm9wZTpub3Bl"}, timeout=30)
    assert basic.status_code == 200, basic.text
    public = httpx.get(url, params=params, timeout=30)

    def prices(body: dict[str, Any]) -> list[Any]:
        return [
            (
                x["id"],
                {
                    g: (v["effective_price"], [a["id"] for a in v["promotions_applied"]])
                    for g, v in x["grades"].items()
                },
            )
            for x in body["results"]
        ]

    assert prices(basic.json()) == prices(public.json())
    assert public.status_code == 200
    silver_ref = next(p.id for p in world["promotions"] if p.source_ref == "test:silver-92")
    for s in public.json()["results"]:
        assert all(a["id"] != silver_ref for a in s["grades"]["92"]["promotions_applied"])
