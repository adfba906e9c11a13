"""Risk test helpers: rules switched off for a test's own database, through the audited override store
(the way an operator does it), when the test compresses into a minute what drivers do over hours or days;
and a price desk (a real API server, stations with a price history) for the price screening tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg

from geo._h3cells import cells_for_point
from ingest._guidance import load_guidance_file
from risk import Rule
from store import _risk
from store._auth import create_api_key
from store._ceilings import ceiling_in, ceilings_for_zone
from store._prices import PriceIn, insert_prices
from store._risk import RULES_FILE
from tests._forecourt import seed_station
from tests._servers import TEST_SECRET_KEY, Server, fresh_rate_prefix

TZ = ZoneInfo("Asia/Shanghai")
ZONE = "yunnan-4"
LAT, LON = 42.5063, 1.5218  # the test server serves the demo region (Andorra on Lijiang time and prices)


def switch_off(db_url: str, *names: str) -> None:
    """Switch off the named rules of the versioned rules file in the database at db_url."""
    rules = {r["name"]: r for r in json.loads(RULES_FILE.read_text(encoding="utf-8"))["rules"]}
    with psycopg.connect(db_url) as conn, conn.transaction():
        for name in names:
            r = rules[name]
            rule = Rule(r["name"], r["point"], r["expr"], r["outcome"], r["reason"])
            _risk.put_override(conn, rule, enabled=False, actor="test-setup")


def priced_station(db_url: str, history: dict[str, Decimal]) -> int:
    """A station in the served region selling 92# and 95#, with four prices of each around `history` over
    the last ten days."""
    sid = seed_station(db_url, pumps=1, grades=("92", "95"))
    now = datetime.now(TZ)
    r7, r8, r9 = cells_for_point(LAT, LON)  # in the served region, found by the H3 prefilter
    rows = [
        PriceIn(sid, g, base + Decimal(step) / 100, now - timedelta(days=10 - 2 * i))
        for g, base in history.items()
        for i, step in enumerate((0, 4, 1, 5))
    ]
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "UPDATE stations SET geom = ST_SetSRID(ST_MakePoint(%s, %s), 4326), h3_r7 = %s, h3_r8 = %s,"
            " h3_r9 = %s WHERE id = %s",
            (LON, LAT, r7, r8, r9, sid),
        )
        insert_prices(conn, rows, zone=ZONE, actor="test-setup")
    return sid


class PriceDesk:
    """A real API server on a test database with the official ceilings loaded and an operator's key:
    stations with a price history, what drivers see of them, reviews through the API."""

    def __init__(self, db_url: str, server: Server, operator: str, ceiling: dict[str, Decimal]) -> None:
        self.db_url, self.server, self.operator, self.ceiling = db_url, server, operator, ceiling

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db_url) as conn:
            return conn.execute(query, params).fetchall()

    def sql_write(self, query: str, *params: Any) -> None:
        with psycopg.connect(self.db_url) as conn:
            conn.execute(query, params)

    def api(self, method: str, path: str, key: str, **kw: Any) -> httpx.Response:
        headers = {"X-API-Key": key, **kw.pop("headers", {})}
        return httpx.request(method, self.server.base + path, headers=headers, timeout=30, **kw)

    def station(self, history: dict[str, Decimal]) -> tuple[int, str]:
        """A station selling 92# and 95# with four past prices of each around `history`, and its manager's key."""
        sid = priced_station(self.db_url, history)
        with psycopg.connect(self.db_url) as conn:
            key = create_api_key(conn, f"mgr-{sid}", "manager", [sid], secret_key=TEST_SECRET_KEY)
        return sid, key

    def shown(self, sid: int) -> dict[str, float]:
        """{grade: list price} drivers see for the station in the nearby search."""
        r = httpx.get(
            self.server.base + "/v1/stations/nearby",
            params={"lat": LAT, "lon": LON, "radius_m": 2000, "limit": 200, "include_closed": "true"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        mine = next((s for s in r.json()["results"] if s["id"] == sid), None)
        assert mine is not None, r.text[:3000]
        return {g: v["list_price"] for g, v in mine["grades"].items() if v.get("list_price") is not None}

    def etag(self, sid: int) -> str:
        r = self.api("GET", f"/v1/manage/stations/{sid}", self.operator)
        assert r.status_code == 200, r.text
        return r.headers["ETag"]

    def review(self, decision_id: int, approve: bool, note: str = "") -> httpx.Response:
        return self.api(
            "POST",
            f"/v1/risk/decisions/{decision_id}/review",
            self.operator,
            json={"approve": approve, "note": note},
        )


def lowest_ceilings(db_url: str, shared_data: Path) -> dict[str, Decimal]:
    """Load the official ceilings; the lowest of 92# and 95# in force over the last ten days."""
    with psycopg.connect(db_url) as conn:
        load_guidance_file(conn, shared_data / "prices" / "yunnan_guidance_prices.json", actor="test-setup")
        book = ceilings_for_zone(conn, ZONE)
    now = datetime.now(TZ)
    out = {}
    for g in ("92", "95"):
        found = [ceiling_in(book, g, now - timedelta(days=d)) for d in range(11)]
        out[g] = min(c.max_price_cny for c in found if c is not None)
    return out


@contextmanager
def price_desk(db_url: str, shared_data: Path) -> Iterator[PriceDesk]:
    ceiling = lowest_ceilings(db_url, shared_data)
    with psycopg.connect(db_url) as conn:
        operator = create_api_key(conn, "price-desk", "operator", secret_key=TEST_SECRET_KEY)
    server = Server(db_url, FUEL_RATE_LIMIT_PREFIX=fresh_rate_prefix())
    try:
        yield PriceDesk(db_url, server, operator, ceiling)
    finally:
        server.close()


def usual_prices(ceiling: dict[str, Decimal]) -> dict[str, Decimal]:
    """The stations' usual prices: 0.40 CNY under the ceiling."""
    return {g: c - Decimal("0.40") for g, c in ceiling.items()}


def anomalous(ceiling: dict[str, Decimal], grade: str) -> Decimal:
    """A price within the official band but about 16 % under the usual one: far beyond the usual steps."""
    return (ceiling[grade] * Decimal("0.80")).quantize(Decimal("0.01"))
