"""Database layer: the pool, migrations, and one module per aggregate."""

from store._ceilings import Ceiling, ceiling_at, ceilings_for_zone, upsert_ceilings
from store._db import (
    Database,
    admin_url,
    create_database,
    database_name,
    drop_database,
    request_scope,
)
from store._migrate import migrate
from store._prices import (
    CurrentPrice,
    PriceIn,
    current_prices,
    insert_price,
    insert_prices,
    price_history,
    station_prices_between,
)
from store._promotions import promotions_between, promotions_for_stations, upsert_promotion
from store._stations import (
    StationIn,
    UpsertCounts,
    get_station,
    nearby_stations,
    stations_in_bbox,
    upsert_station,
    upsert_stations,
)

__all__ = [
    "Ceiling",
    "CurrentPrice",
    "Database",
    "PriceIn",
    "StationIn",
    "UpsertCounts",
    "admin_url",
    "ceiling_at",
    "ceilings_for_zone",
    "create_database",
    "current_prices",
    "database_name",
    "drop_database",
    "get_station",
    "insert_price",
    "insert_prices",
    "migrate",
    "nearby_stations",
    "price_history",
    "promotions_between",
    "promotions_for_stations",
    "request_scope",
    "station_prices_between",
    "stations_in_bbox",
    "upsert_ceilings",
    "upsert_promotion",
    "upsert_station",
    "upsert_stations",
]
