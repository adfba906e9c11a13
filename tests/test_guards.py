"""Request guards, in process against real PostgreSQL and Redis: rate limits and what they are keyed
by, weighted POSTs, failed authentications, header and body caps, security headers, bad input that
must be a 4xx and never a 500, no server paths in answers, development secrets on a public address."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi import Depends
from fastapi.testclient import TestClient

from api._state import AppState, get_state
from api.main import create_app
from config import PROJECT_ROOT, Settings
from store._auth import create_api_key
from tests._servers import TEST_ADMIN_KEY

NEARBY = {"lat": 42.5, "lon": 1.52}
ANDORRA_A, ANDORRA_B = [42.5063, 1.5218], [42.5347, 1.58]


def limited(demo_settings: Settings, **update: Any) -> Settings:
    """The demo settings with their own Redis key prefix, so no other test shares these windows."""
    return demo_settings.model_copy(update={"rate_limit_prefix": f"test-{uuid.uuid4().hex}", **update})


@pytest.fixture(scope="module")
def stored_key(demo_settings: Settings) -> str:
    with psycopg.connect(demo_settings.database_url, autocommit=True) as conn:
        return create_api_key(
            conn, f"guards-{uuid.uuid4().hex[:8]}", "operator", secret_key=demo_settings.secret_key
        )


def test_rate_limit_gives_429_with_retry_after(demo_settings: Settings, stored_key: str) -> None:
    with TestClient(create_app(limited(demo_settings, rate_limit_per_minute=5))) as c:
        codes = [c.get("/v1/stations/nearby", params=NEARBY).status_code for _ in range(5)]
        assert codes == [200] * 5
        r = c.get("/v1/stations/nearby", params=NEARBY)
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert "requests a minute" in r.json()["error"]["message"]
        # a valid API key has a budget of its own; ops endpoints are never limited
        assert (
            c.get("/v1/stations/nearby", params=NEARBY, headers={"X-API-Key": stored_key}).status_code == 200
        )
        assert c.get("/health").status_code == 200


def test_osrm_services_share_the_clients_budget(demo_settings: Settings) -> None:
    lonlat = f"{ANDORRA_A[1]},{ANDORRA_A[0]};{ANDORRA_B[1]},{ANDORRA_B[0]}"
    with TestClient(create_app(limited(demo_settings, rate_limit_per_minute=4))) as c:
        paths = [
            f"/route/v1/driving/{lonlat}",
            f"/table/v1/car/{lonlat}",
            f"/nearest/v1/driving/{ANDORRA_A[1]},{ANDORRA_A[0]}",
            f"/trip/v1/driving/{lonlat}",  # an OSRM service we do not offer is counted too
        ]
        assert [c.get(p).status_code for p in paths] == [200, 200, 200, 400]
        r = c.get(f"/route/v1/bike/{lonlat}")
        assert r.status_code == 429 and "retry-after" in r.headers
        assert c.get("/").status_code == 200 and c.get("/ready").status_code == 200


def test_made_up_api_keys_get_no_budget_of_their_own(demo_settings: Settings) -> None:
    with TestClient(create_app(limited(demo_settings, rate_limit_per_minute=5))) as c:
        codes = [
            c.get("/v1/map/region", headers={"X-API-Key": f"made-up-{i}-" + "k" * 2_000}).status_code
            for i in range(8)
        ]
        assert codes == [200] * 5 + [429] * 3


def test_post_requests_are_limited_and_matrix_is_charged_by_cells(demo_settings: Settings) -> None:
    settings = limited(demo_settings, rate_limit_per_minute=21, rate_cost_matrix_cells=1)
    with TestClient(create_app(settings)) as c:
        three = {"sources": [ANDORRA_A, ANDORRA_B, ANDORRA_A]}  # no targets: 3 x 3 = 9 cells
        assert c.post("/v1/matrix", json=three).status_code == 200
        assert c.post("/v1/matrix", json=three).status_code == 200
        refused = {"sources": [ANDORRA_A] * 200, "targets": []}  # a 422 costs one request, not cells
        assert c.post("/v1/matrix", json=refused).status_code == 422
        r = c.post("/v1/matrix", json=three)  # 9 + 9 + 1 used: 9 more do not fit in 21
        assert r.status_code == 429, r.text
        assert int(r.headers["retry-after"]) >= 1
        assert "9 matrix cells" in r.json()["error"]["message"]
        one = {"sources": [ANDORRA_A], "targets": [ANDORRA_B]}
        assert c.post("/v1/matrix", json=one).status_code == 200  # 1 cell still fits


def test_along_route_post_is_charged_by_points(demo_settings: Settings) -> None:
    settings = limited(demo_settings, rate_limit_per_minute=10, rate_cost_route_points=10)
    line = [[42.5063 + i * 0.0005, 1.5218 + i * 0.0005] for i in range(60)]  # 60 points: 6 requests
    with TestClient(create_app(settings)) as c:
        assert c.post("/v1/stations/along-route", json={"geometry": line}).status_code == 200
        r = c.post("/v1/stations/along-route", json={"geometry": line})
        assert r.status_code == 429 and "60 route points" in r.json()["error"]["message"]


def test_failed_authentications_are_logged_and_throttled(
    demo_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = limited(demo_settings, auth_failures_per_minute=3)
    secret_part = uuid.uuid4().hex
    with TestClient(create_app(settings)) as c, caplog.at_level(logging.WARNING, logger="api.auth"):
        wrong = {"X-API-Key": "guess-" + secret_part}
        codes = [c.patch("/v1/stations/1", json={"name": "x"}, headers=wrong).status_code for _ in range(3)]
        assert codes == [401] * 3
        r = c.patch("/v1/stations/1", json={"name": "x"}, headers=wrong)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        # the address is throttled, whatever key it tries next
        ok_key = {"X-API-Key": TEST_ADMIN_KEY}
        assert c.patch("/v1/stations/1", json={"name": "x"}, headers=ok_key).status_code == 429
    failures = [rec.getMessage() for rec in caplog.records if rec.name == "api.auth"]
    assert len(failures) == 3
    assert all("testclient" in m and "'guess-'" in m for m in failures)
    assert not any(secret_part in m for m in failures)


def test_headers_above_the_cap_give_431(demo_settings: Settings) -> None:
    settings = limited(demo_settings, max_header_bytes=4_096)
    with TestClient(create_app(settings)) as c:
        r = c.get("/v1/map/region", headers={"X-Padding": "p" * 5_000})
        assert r.status_code == 431 and r.json()["error"]["code"] == "HeadersTooLarge"
        assert c.get("/v1/map/region", headers={"X-Padding": "p" * 1_000}).status_code == 200


def test_body_size_limit_gives_413(demo_settings: Settings) -> None:
    settings = limited(demo_settings, max_body_bytes=1000)
    with TestClient(create_app(settings)) as c:
        big = {"sources": [[42.5, 1.52]] * 200}
        r = c.post("/v1/matrix", json=big)
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "PayloadTooLarge"
        small = c.post("/v1/matrix", json={"sources": [[42.5063, 1.5218]]})
        assert small.status_code == 200


def test_chunked_body_over_the_limit_gives_413(demo_settings: Settings) -> None:
    settings = limited(demo_settings, max_body_bytes=1000)

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"sources": ['
        for _ in range(199):
            yield b"[42.5, 1.52],"
        yield b"[42.5, 1.52]]}"

    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/matrix", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text
        assert r.json()["error"]["code"] == "PayloadTooLarge"


def test_map_page_and_answers_carry_security_headers(client: TestClient) -> None:
    for path in ("/", "/static/app.js", "/static/dist/leaflet.css"):
        r = client.get(path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-eval" not in csp and "http" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
    api = client.get("/v1/map/region")
    assert api.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        (
            "/v1/route",
            {"from": "42.5063,1.5218", "to": "42.5347,1.58", "depart_at": "0001-01-01T00:00:00"},
            "depart_at",
        ),
        (
            "/v1/route",
            {"from": "42.5063,1.5218", "to": "42.5347,1.58", "depart_at": "9999-12-31T23:59:59"},
            "depart_at",
        ),
        ("/v1/stations/nearby", {**NEARBY, "at": "9999-12-31T23:59:59+14:00"}, "at"),
        ("/v1/stations/nearby", {**NEARBY, "at": "0001-01-01T00:00:00Z"}, "at"),
        ("/v1/map/stations", {"bbox": "1.4,42.4,1.8,42.7", "zoom": "14", "at": "9999-12-31T00:00:00"}, "at"),
    ],
)
def test_dates_outside_the_window_give_422(
    client: TestClient, path: str, params: dict[str, str], param: str
) -> None:
    r = client.get(path, params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == param
    assert "within 730 days" in r.json()["error"]["message"]


def test_matrix_depart_at_outside_the_window_gives_422(client: TestClient) -> None:
    far = (datetime.now(UTC) + timedelta(days=3_000)).isoformat()
    r = client.post("/v1/matrix", json={"sources": [ANDORRA_A], "depart_at": far})
    assert r.status_code == 422 and r.json()["error"]["param"] == "depart_at"
    near = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    assert client.post("/v1/matrix", json={"sources": [ANDORRA_A], "depart_at": near}).status_code == 200


CONTROL = "control characters"  # free text refuses them
ONE_OF = "must be one of"  # a closed choice (amenity, grade) names the choices


@pytest.mark.parametrize(
    ("path", "method", "body", "param", "rule"),
    [
        ("/v1/stations/1", "PATCH", {"name": "Repsol\x00", "version": 1}, "name", CONTROL),
        ("/v1/stations/1", "PATCH", {"address": "Av. Meritxell \x1b[31m", "version": 1}, "address", CONTROL),
        ("/v1/stations/1", "PATCH", {"amenities": ["shop\x00"], "version": 1}, "amenities[0]", ONE_OF),
        (
            "/v1/stations/1/promotions",
            "POST",
            {
                "title": "10% off\x07",
                "kind": "percent_off",
                "value": "10",
                "valid_from": "2026-01-01T00:00:00",
            },
            "title",
            CONTROL,
        ),
        (
            "/v1/stations/1/prices",
            "PUT",
            {"prices": [{"grade": "95\x00", "price_cny": "8.10"}], "version": 1},
            "prices[0].grade",
            ONE_OF,
        ),
    ],
)
def test_control_characters_in_manager_writes_give_422(
    client: TestClient, path: str, method: str, body: dict[str, Any], param: str, rule: str
) -> None:
    r = client.request(method, path, json=body, headers={"X-API-Key": TEST_ADMIN_KEY})
    assert r.status_code == 422, r.text
    errors = r.json()["error"]["errors"]
    assert any(e["param"].endswith(param) and rule in e["message"] for e in errors), errors


def test_a_value_the_database_refuses_is_a_422(demo_settings: Settings) -> None:
    app = create_app(limited(demo_settings))

    @app.get("/v1/test-only/cast")
    def cast(value: str, state: AppState = Depends(get_state)) -> dict[str, Any]:
        with state.db.connection() as conn:
            row = conn.execute("SELECT %s::date AS day", (value,)).fetchone()
        return {"date": str(row["day"]) if row else None}

    with TestClient(app) as c:
        assert c.get("/v1/test-only/cast", params={"value": "2026-01-02"}).status_code == 200
        r = c.get("/v1/test-only/cast", params={"value": "20260-99-99"})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "InvalidInput"


def test_answers_name_no_server_paths(client: TestClient, demo_settings: Settings) -> None:
    answers = [
        client.get("/v1/map/region"),
        client.get("/v1/stations/nearby", params=NEARBY),
        client.get("/v1/map/stations", params={"bbox": "1.4,42.4,1.8,42.7", "zoom": "9"}),
    ]
    for r in answers:
        assert r.status_code == 200
        assert str(PROJECT_ROOT) not in r.text and str(demo_settings.shared_data_dir) not in r.text
        assert ".pbf" not in r.text
    region = answers[0].json()
    assert region["is_demo"] and "Andorra" in region["served_note"]


def test_docs_are_off_in_production_unless_asked_for(demo_settings: Settings) -> None:
    strong = {"secret_key": "pR0d-" + uuid.uuid4().hex + uuid.uuid4().hex, "admin_api_key": ""}
    prod = Settings(**{**demo_settings.model_dump(), **strong, "env": "production"})
    with TestClient(create_app(limited(prod))) as c:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert c.get(path).status_code == 404, path
    asked = prod.model_copy(update={"docs_enabled": True})
    with TestClient(create_app(limited(asked))) as c:
        assert c.get("/openapi.json").status_code == 200
    with TestClient(create_app(limited(demo_settings))) as c:  # test and development serve them
        assert c.get("/openapi.json").status_code == 200


def test_development_secrets_are_served_on_loopback_only(demo_settings: Settings) -> None:
    dev = Settings(database_url=demo_settings.database_url, shared_data_dir=demo_settings.shared_data_dir)
    assert dev.uses_dev_secrets and dev.env == "development"
    app = create_app(limited(dev))
    with TestClient(app, base_url="http://fuel.example.com") as c:
        r = c.get("/v1/map/region")
        assert r.status_code == 503 and r.json()["error"]["code"] == "UnsafeSettings"
        assert c.get("/health").status_code == 503
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        assert c.get("/v1/map/region").status_code == 200


def test_cors_origins_come_from_settings(client: TestClient) -> None:
    allowed = client.options(
        "/v1/stations/nearby",
        headers={"Origin": "http://127.0.0.1:8000", "Access-Control-Request-Method": "GET"},
    )
    assert allowed.headers.get("access-control-allow-origin") == "http://127.0.0.1:8000"
    denied = client.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in denied.headers


def test_unknown_route_is_a_clean_404(client: TestClient) -> None:
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "HTTPError"
