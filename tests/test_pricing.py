"""Promotions in local time, effective prices, stacking; official ceilings and the price check."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from config import load_region
from geo import PriceAboveCeiling
from geo._pricing import Promotion, applies, effective_price
from ingest._guidance import in_force_from, load_guidance_file, parse_guidance
from store._ceilings import ceiling_at
from store._prices import PriceIn, current_prices, insert_price, insert_prices, price_history
from store._promotions import promotions_for_stations, upsert_promotion
from store._stations import StationIn, upsert_station

SH = ZoneInfo("Asia/Shanghai")
REGION = load_region("lijiang")
D = Decimal


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def local(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=SH)


def promo(**kw: object) -> Promotion:
    base: dict[str, object] = {"kind": "cny_off_per_litre", "value": D("0.30"), "id": 1}
    base.update(kw)
    return Promotion(**base)  # type: ignore[arg-type]


# --- days and dates in Asia/Shanghai ---------------------------------------------------------------
def test_saturday_promotion_applies_at_saturday_1am_local_which_is_friday_utc() -> None:
    sat = promo(days_of_week=(6,))
    at = utc(2026, 11, 27, 17, 0)  # Friday 17:00 UTC = Saturday 01:00 in Lijiang
    price, applied = effective_price(D("8.80"), "92", [sat], at, tz=SH)
    assert applied and applied[0].promotion is sat
    assert price == D("8.50")
    # Friday 23:00 local (15:00 UTC) is not Saturday
    price, applied = effective_price(D("8.80"), "92", [sat], utc(2026, 11, 27, 15, 0), tz=SH)
    assert not applied and price == D("8.80")


def test_weekday_vs_saturday() -> None:
    weekdays = promo(days_of_week=(1, 2, 3, 4, 5))
    assert applies(weekdays, local(2026, 11, 25, 12))  # Wednesday
    assert not applies(weekdays, local(2026, 11, 28, 12))  # Saturday
    assert not applies(promo(days_of_week=(6,)), local(2026, 11, 29, 12))  # Sunday


def test_naive_at_is_local_time() -> None:
    sat = promo(days_of_week=(6,))
    _, applied = effective_price(D("8.80"), "92", [sat], datetime(2026, 11, 28, 0, 30), tz=SH)
    assert applied


def test_date_range_midnight_in_shanghai_not_utc() -> None:
    day = promo(date_ranges=((date(2026, 11, 28), date(2026, 11, 28)),))
    assert applies(day, utc(2026, 11, 27, 16, 0).astimezone(SH))  # 00:00 local on the 28th
    assert not applies(day, utc(2026, 11, 27, 15, 59).astimezone(SH))  # 23:59 local on the 27th
    assert applies(day, utc(2026, 11, 28, 15, 59).astimezone(SH))  # 23:59 local on the 28th
    assert not applies(day, utc(2026, 11, 28, 16, 0).astimezone(SH))


def test_holiday_date_ranges_and_public_holidays() -> None:
    national_day = promo(date_ranges=((date(2026, 10, 1), date(2026, 10, 7)),))
    assert applies(national_day, local(2026, 10, 1, 0, 0))
    assert applies(national_day, local(2026, 10, 7, 23, 59))
    assert not applies(national_day, local(2026, 10, 8, 0, 0))
    holiday = promo(kind="percent_off", value=D("3"), public_holidays_only=True)
    assert applies(holiday, local(2026, 10, 3, 9), holidays=REGION.holidays)
    assert not applies(holiday, local(2026, 10, 10, 9), holidays=REGION.holidays)  # a worked Saturday
    assert not applies(holiday, local(2026, 11, 28, 9), holidays=REGION.holidays)  # plain Saturday
    price, _ = effective_price(
        D("9.00"), "95", [holiday], local(2026, 10, 3, 9), tz=SH, holidays=REGION.holidays
    )
    assert price == D("8.73")


def test_time_window_across_midnight() -> None:
    night = promo(time_from=time(22, 0), time_to=time(2, 0))
    assert applies(night, local(2026, 11, 25, 22, 0))
    assert applies(night, local(2026, 11, 25, 23, 30))
    assert applies(night, local(2026, 11, 26, 1, 59))
    assert not applies(night, local(2026, 11, 26, 2, 0))
    assert not applies(night, local(2026, 11, 25, 21, 59))
    # "Friday night 22:00-02:00": Saturday 01:00 still belongs to Friday's window
    friday_night = promo(days_of_week=(5,), time_from=time(22, 0), time_to=time(2, 0))
    assert applies(friday_night, local(2026, 11, 28, 1, 0))  # Saturday 01:00
    assert not applies(friday_night, local(2026, 11, 27, 1, 0))  # Friday 01:00 belongs to Thursday
    assert applies(friday_night, local(2026, 11, 27, 23, 0))


def test_evening_window_in_utc_terms() -> None:
    evening = promo(time_from=time(18, 0), time_to=time(23, 0))
    _, applied = effective_price(D("8.80"), "92", [evening], utc(2026, 11, 25, 10, 30), tz=SH)  # 18:30 local
    assert applied
    _, applied = effective_price(D("8.80"), "92", [evening], utc(2026, 11, 25, 15, 0), tz=SH)  # 23:00 local
    assert not applied


# --- kinds, conditions, stacking -------------------------------------------------------------------
def test_best_single_promotion_no_stacking() -> None:
    at = local(2026, 11, 28, 12)
    a = promo(id=1, value=D("0.20"))
    b = promo(id=2, kind="percent_off", value=D("5"))  # 0.44 on 8.80
    c = promo(id=3, value=D("0.50"), grades=("95",))  # other grade
    price, applied = effective_price(D("8.80"), "92", [a, b, c], at, tz=SH)
    assert [x.promotion.id for x in applied] == [2]
    assert price == D("8.36")
    assert applied[0].saving_per_litre == D("0.44")
    assert applied[0].saving_total == D("17.60")


def test_order_discount_uses_litres_default_40() -> None:
    at = local(2026, 11, 28, 12)
    order = promo(kind="cny_off_per_order", value=D("10"), min_amount_cny=D("200"))
    price, applied = effective_price(D("8.00"), "92", [order], at, tz=SH)  # 40 L = 320 CNY
    assert applied and price == D("7.75")
    price, applied = effective_price(D("8.00"), "92", [order], at, tz=SH, litres=20)  # 160 CNY < 200
    assert not applied and price == D("8.00")
    price, applied = effective_price(D("8.00"), "92", [order], at, tz=SH, litres=25)  # 200 CNY
    assert applied and price == D("7.60")


def test_member_payment_topup_litres_validity() -> None:
    at = local(2026, 11, 28, 12)
    members = promo(members_only=True)
    assert not applies(members, at) and applies(members, at, member=True)
    wechat = promo(payment_methods=("wechat",))
    assert not applies(wechat, at) and not applies(wechat, at, payment="cash")
    assert applies(wechat, at, payment="WeChat")
    topup = promo(kind="topup_bonus", value=D("10"))
    assert not applies(topup, at)
    assert applies(topup, at, member=True) and applies(topup, at, topup=True)
    price, _ = effective_price(D("8.80"), "92", [topup], at, tz=SH, member=True)
    assert price == D("8.00")
    big = promo(min_litres=D("30"))
    assert not applies(big, at, litres=20) and applies(big, at, litres=30) and not applies(big, at)
    window = promo(valid_from=local(2026, 11, 1), valid_to=local(2026, 12, 1))
    assert (
        applies(window, at)
        and not applies(window, local(2026, 12, 1))
        and not applies(window, local(2026, 10, 31))
    )
    with pytest.raises(ValueError):
        applies(promo(), datetime(2026, 11, 28, 12))
    with pytest.raises(ValueError):
        promo(days_of_week=(0,))


# --- ceilings ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def conn(module_db: str, shared_data: Path) -> Iterator[psycopg.Connection]:
    with psycopg.connect(module_db, autocommit=True) as c:
        load_guidance_file(c, shared_data / "prices" / "yunnan_guidance_prices.json", actor="test-setup")
        yield c


def test_guidance_parse_and_idempotent_load(conn: psycopg.Connection, shared_data: Path) -> None:
    path = shared_data / "prices" / "yunnan_guidance_prices.json"
    ceilings = parse_guidance(json.loads(path.read_text(encoding="utf-8")))
    zone4 = [c for c in ceilings if c.zone == "yunnan-4"]
    assert len(zone4) == 8 and {c.grade for c in zone4} == {"89", "92", "95", "0"}
    assert {c.zone for c in ceilings} >= {"yunnan-1", "yunnan-5"}
    assert in_force_from(date(2026, 9, 24)) == local(2026, 9, 25)
    loaded = load_guidance_file(conn, path, actor="test-setup")
    assert (loaded.total, loaded.changed, loaded.removed) == (len(ceilings), 0, [])


def test_ceiling_in_force_switches_at_local_midnight(conn: psycopg.Connection) -> None:
    before = ceiling_at(conn, "yunnan-4", "92", utc(2026, 9, 24, 15, 59, 59))
    after = ceiling_at(conn, "yunnan-4", "92", utc(2026, 9, 24, 16, 0))
    assert before is not None and before.max_price_cny == D("8.83")
    assert (
        after is not None and after.max_price_cny == D("8.99") and after.adjustment_date == date(2026, 9, 24)
    )
    assert ceiling_at(conn, "yunnan-4", "92", local(2026, 4, 1)) is None
    assert ceiling_at(conn, "yunnan-4", "98", local(2026, 11, 1)) is None


GRADES = ("92", "95", "98", "0")


def _station(conn: psycopg.Connection, ref: str) -> int:
    # Kunming: away from the Lijiang stations of the API tests
    station = StationIn("onboarding", ref, 25.04, 102.71, name="测试站", brand="sinopec", grades=GRADES)
    return upsert_station(conn, station, actor="test-setup")


def test_price_above_ceiling_rejected_98_accepted(conn: psycopg.Connection) -> None:
    sid = _station(conn, "pricing/ceiling")
    at = local(2026, 10, 1)
    insert_price(
        conn, PriceIn(sid, "92", D("8.99"), at, source="station"), zone="yunnan-4", actor="test-setup"
    )  # at the ceiling
    with pytest.raises(PriceAboveCeiling) as err:
        insert_price(
            conn,
            PriceIn(sid, "92", D("9.00"), local(2026, 10, 2), source="station"),
            zone="yunnan-4",
            actor="test-setup",
        )
    msg = str(err.value)
    assert err.value.param == "price_cny"
    for part in (f"station {sid}", "92", "9.00", "8.99", "2026-09-24"):
        assert part in msg
    # 9.00 was fine under the old notice? No: 8.83 then. 8.90 is above the April ceiling, below September's.
    with pytest.raises(PriceAboveCeiling):
        insert_price(
            conn,
            PriceIn(sid, "92", D("8.90"), local(2026, 9, 24, 23, 59), source="station"),
            zone="yunnan-4",
            actor="test-setup",
        )
    insert_price(
        conn,
        PriceIn(sid, "92", D("8.90"), local(2026, 9, 25, 0, 0), source="station"),
        zone="yunnan-4",
        actor="test-setup",
    )
    # 98# has no ceiling
    assert (
        insert_price(
            conn, PriceIn(sid, "98", D("12.50"), at, source="station"), zone="yunnan-4", actor="test-setup"
        )
        == 1
    )
    # a batch with one bad row writes nothing
    with pytest.raises(PriceAboveCeiling):
        insert_prices(
            conn,
            [
                PriceIn(sid, "95", D("9.00"), local(2026, 11, 1)),
                PriceIn(sid, "0", D("9.99"), local(2026, 11, 1)),
            ],
            zone="yunnan-4",
            actor="test-setup",
        )
    assert not price_history(conn, sid, grade="95")


def test_current_price_is_newest_not_after_at(conn: psycopg.Connection) -> None:
    sid = _station(conn, "pricing/current")
    for day, p in ((1, "8.50"), (10, "8.70"), (20, "8.60")):
        insert_price(
            conn, PriceIn(sid, "92", D(p), local(2026, 10, day)), zone="yunnan-4", actor="test-setup"
        )
    assert (
        insert_price(
            conn, PriceIn(sid, "92", D("8.60"), local(2026, 10, 20)), zone="yunnan-4", actor="test-setup"
        )
        == 0
    )
    cur = current_prices(conn, [sid], local(2026, 10, 15))[sid]["92"]
    assert cur.price_cny == D("8.70") and cur.effective_from == local(2026, 10, 10)
    assert current_prices(conn, [sid], local(2026, 9, 30)) == {}
    assert current_prices(conn, [sid], local(2026, 10, 20))[sid]["92"].price_cny == D("8.60")


def test_promotions_for_stations_station_and_brand_scope(conn: psycopg.Connection) -> None:
    sid = _station(conn, "pricing/promos")
    other = _station(conn, "pricing/promos-other")
    p_station = promo(
        id=None,
        scope="station",
        station_id=sid,
        valid_from=local(2026, 1, 1),
        source="station",
        source_ref="t:station",
    )
    p_brand = promo(
        id=None,
        scope="brand",
        brand="sinopec",
        valid_from=local(2026, 1, 1),
        source="feed",
        source_ref="t:brand",
        days_of_week=(6,),
        date_ranges=((date(2026, 11, 1), date(2026, 11, 30)),),
    )
    p_old = promo(
        id=None,
        scope="station",
        station_id=sid,
        valid_from=local(2025, 1, 1),
        valid_to=local(2025, 2, 1),
        source="station",
        source_ref="t:old",
    )
    ids = [
        upsert_promotion(conn, p, actor="test-setup", zone="yunnan-4")[0] for p in (p_station, p_brand, p_old)
    ]
    assert upsert_promotion(conn, p_station, actor="test-setup", zone="yunnan-4") == (ids[0], False)
    got = promotions_for_stations(conn, [(sid, "sinopec"), (other, "sinopec")], at=local(2026, 11, 28))
    assert sorted(p.id for p in got[sid] if p.id is not None) == sorted(ids[:2])
    assert [p.id for p in got[other]] == [ids[1]]
    brand = next(p for p in got[other])
    assert brand.days_of_week == (6,) and brand.date_ranges == ((date(2026, 11, 1), date(2026, 11, 30)),)


def test_guidance_command(module_db: str, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from config import get_settings
    from ingest.__main__ import main

    monkeypatch.setenv("DATABASE_URL", module_db)
    get_settings.cache_clear()
    try:
        path = str(shared_data / "prices" / "yunnan_guidance_prices.json")
        assert main(["guidance", path]) == 0
        assert main(["guidance", path]) == 0  # idempotent
        assert main(["guidance", "/nonexistent.json"]) == 1
    finally:
        get_settings.cache_clear()
    with psycopg.connect(module_db) as c:
        n = c.execute("SELECT count(*) FROM price_ceilings WHERE zone = 'yunnan-4'").fetchone()
        assert n is not None and n[0] == 8


def test_guidance_rejects_inconsistent_files() -> None:
    good = {
        "adjustment_date": "2026-09-24",
        "effective_from": "2026-09-25T00:00:00+08:00",
        "prices": {"92": 8.99},
    }
    assert parse_guidance({"zone": {"code": "z"}, "notices": [good]})[0].effective_from == local(2026, 9, 25)
    for bad in (
        {"zone": {"code": "z"}, "notices": [{**good, "effective_from": "2026-09-24T00:00:00+08:00"}]},
        {"zone": {"code": "z"}, "notices": [{**good, "prices": {"93": 9.0}}]},
        {"zone": {"code": "z"}, "notices": [{**good, "prices": {"92": 0}}]},
        {"zone": {"code": "z"}, "notices": []},
        {"notices": [good]},
    ):
        with pytest.raises(ValueError):
            parse_guidance(bad)
