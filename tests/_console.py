"""Station console test parts: staff accounts made through the API and logged-in console clients."""

from __future__ import annotations

import uuid

import httpx

from tests._servers import TEST_ADMIN_KEY

PASSWORD = "Lijiang-2026-pw"


def username(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_staff(
    base: str, station: int, role: str, *, by: httpx.Client | None = None, name: str | None = None
) -> str:
    """A staff account (by an operator key, or by `by`'s console session); its username."""
    user = name or username(role[:3])
    body = {
        "station_id": station,
        "username": user,
        "display_name": f"{role} {user[-4:]}",
        "role": role,
        "password": PASSWORD,
    }
    if by is None:
        r = httpx.post(
            f"{base}/v1/console/staff", json=body, headers={"X-API-Key": TEST_ADMIN_KEY}, timeout=30
        )
    else:
        r = by.post("/v1/console/staff", json=body)
    assert r.status_code == 201, r.text
    return user


def console(base: str, user: str, password: str = PASSWORD) -> httpx.Client:
    """A client logged in to the console as `user` (the session cookie kept)."""
    client = httpx.Client(base_url=base, timeout=30)
    r = client.post("/v1/console/login", json={"username": user, "password": password})
    assert r.status_code == 200, r.text
    return client
