"""Request guards: per-client rate limits, body size limits, CORS from settings, secrets."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.main import create_app
from config import Settings


def test_rate_limit_gives_429_with_retry_after(demo_settings: Settings) -> None:
    settings = demo_settings.model_copy(update={"rate_limit_per_minute": 5})
    with TestClient(create_app(settings)) as c:
        codes = [
            c.get("/v1/stations/nearby", params={"lat": 42.5, "lon": 1.52}).status_code for _ in range(8)
        ]
        assert codes[:5] == [200] * 5
        r = c.get("/v1/stations/nearby", params={"lat": 42.5, "lon": 1.52})
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert "requests a minute" in r.json()["error"]["message"]
        # another client (API key) has its own budget; ops endpoints are never limited
        assert (
            c.get(
                "/v1/stations/nearby", params={"lat": 42.5, "lon": 1.52}, headers={"X-API-Key": "k2"}
            ).status_code
            == 200
        )
        assert c.get("/health").status_code == 200


def test_body_size_limit_gives_413(demo_settings: Settings) -> None:
    settings = demo_settings.model_copy(update={"max_body_bytes": 1000})
    with TestClient(create_app(settings)) as c:
        big = {"sources": [[42.5, 1.52]] * 200}
        r = c.post("/v1/matrix", json=big)
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "PayloadTooLarge"
        small = c.post("/v1/matrix", json={"sources": [[42.5063, 1.5218]]})
        assert small.status_code == 200


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
