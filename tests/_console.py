"""Station console test parts: staff accounts made through the API, logged-in console clients, and a
fill-up at the simulated site (taken by its cashier unless told otherwise)."""

from __future__ import annotations

import uuid

import httpx

from tests._fuelling import Stack, wait_for
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


def fuel(stack: Stack, pump: int, litres: str, *, nozzle: int = 1, cashier: bool = True) -> int:
    before = {r[0] for r in stack.sql("SELECT id FROM fcc_sales WHERE station_id = %s", stack.station)}
    stack.sim.post(f"/pumps/{pump}/lift", nozzle=nozzle)
    stack.sim.post(f"/pumps/{pump}/fuel", litres=litres, wait="true")
    stack.sim.post(f"/pumps/{pump}/hangup")
    sale = int(
        wait_for(
            lambda: (
                sorted(
                    {r[0] for r in stack.sql("SELECT id FROM fcc_sales WHERE station_id = %s", stack.station)}
                    - before
                )
                or [None]
            )[0]
        )
    )
    if cashier:
        tx = stack.sql("SELECT site_tx_id FROM fcc_sales WHERE id = %s", sale)[0][0]
        stack.sim.post(f"/pumps/{pump}/cashier", site_tx_id=tx)
        wait_for(lambda: stack.sql("SELECT state FROM fcc_sales WHERE id = %s", sale)[0][0] == "cleared")
    return sale
