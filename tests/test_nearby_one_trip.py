"""The one-statement nearby search (stations, prices in force, promotions valid) answers exactly what
the separate reads do, and psycopg prepares it once it repeats."""

from __future__ import annotations

from datetime import timedelta

import psycopg
from hypothesis import given, settings
from psycopg.rows import dict_row

from store._prices import current_prices
from store._promotions import promotions_for_stations
from store._stations import nearby_offers, nearby_stations
from tests._nearby_data import CENTRE, QUERIES, SINCE


@settings(max_examples=40, deadline=None, derandomize=True)
@given(**QUERIES)
def test_one_statement_equals_separate_reads(
    nearby_conn: psycopg.Connection,
    dlat: float,
    dlon: float,
    radius: float,
    limit: int,
    grade: str | None,
    day: float,
) -> None:
    lat, lon = CENTRE[0] + dlat, CENTRE[1] + dlon
    at = SINCE + timedelta(days=day)
    got = nearby_offers(nearby_conn, lat, lon, radius, limit=limit, grade=grade, at=at)
    rows = nearby_stations(nearby_conn, lat, lon, radius, limit=limit, grade=grade, expand=False)
    ids = [int(r["id"]) for r in rows]
    prices = current_prices(nearby_conn, ids, at)
    promos = promotions_for_stations(nearby_conn, [(int(r["id"]), r["brand"]) for r in rows], at=at)
    assert [f.row for f in got] == rows
    assert [f.prices for f in got] == [prices.get(i, {}) for i in ids]
    assert [f.promotions for f in got] == [promos[i] for i in ids]


def test_the_statement_is_prepared_once_it_repeats(nearby_conn: psycopg.Connection, module_db: str) -> None:
    at = SINCE + timedelta(days=5)
    with psycopg.connect(module_db, autocommit=True, row_factory=dict_row) as fresh:
        calls = (fresh.prepare_threshold or 0) + 1
        for k in range(calls):
            got = nearby_offers(fresh, CENTRE[0] + k * 1e-4, CENTRE[1], 5_000.0, limit=20, at=at)
            assert len(got) == 20
        found = fresh.execute(
            "SELECT count(*) AS n FROM pg_prepared_statements WHERE statement LIKE %s",
            ("%AS prices_in_force%AS promotions_valid%",),
        ).fetchone()
    assert found is not None and found["n"] == 1
