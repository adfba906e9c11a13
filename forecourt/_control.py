"""The simulator's control interface: a small HTTP API on loopback (development and tests only).

    GET  /sites                                   every simulated site (state, pumps, buffers)
    GET  /sites/{station}                         one site
    POST /sites/{station}/pumps/{pump}/lift?nozzle=N
    POST /sites/{station}/pumps/{pump}/preset?litres=L | ?amount=CNY
    POST /sites/{station}/pumps/{pump}/fuel?litres=L[&wait=true]
    POST /sites/{station}/pumps/{pump}/hangup
    POST /sites/{station}/pumps/{pump}/cashier[?site_tx_id=T]
    POST /sites/{station}/pumps/{pump}/{suspend|resume|open|close}
    POST /sites/{station}/link/{drop|offline|online}
    GET  /sites/{station}/link/wait?online=true&timeout=S

A refused operation answers 409 (404 for an unknown pump, nozzle or sale) with the site's reason.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse

from forecourt._simulator import SimulatedSite
from forecourt._site import Event, SiteError

Litres = Annotated[Decimal, Query(gt=0, le=2000, max_digits=7, decimal_places=3)]


def control_app(sites: dict[int, SimulatedSite]) -> FastAPI:
    app = FastAPI(title="Simulated forecourt control", docs_url=None, redoc_url=None, openapi_url=None)

    def site_of(station: int) -> SimulatedSite:
        sim = sites.get(station)
        if sim is None:
            raise HTTPException(404, f"no simulated site for station {station}")
        return sim

    @app.exception_handler(SiteError)
    async def _refused(_: Any, exc: SiteError) -> JSONResponse:
        status = 404 if exc.code == 404 else 409
        return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=status)

    def done(sim: SimulatedSite, events: list[Event]) -> dict[str, Any]:
        return {"events": [type(e).__name__ for e in events], "site": sim.snapshot()}

    @app.get("/sites")
    async def all_sites() -> list[dict[str, Any]]:
        return [sim.snapshot() for sim in sites.values()]

    @app.get("/sites/{station}")
    async def one_site(station: int) -> dict[str, Any]:
        return site_of(station).snapshot()

    @app.post("/sites/{station}/pumps/{pump}/lift")
    async def lift(station: int, pump: int, nozzle: Annotated[int, Query(ge=1, le=9)] = 1) -> dict[str, Any]:
        sim = site_of(station)
        return done(sim, await sim.operate(lambda: sim.site.lift(pump, nozzle)))

    @app.post("/sites/{station}/pumps/{pump}/preset")
    async def preset(
        station: int,
        pump: int,
        litres: Litres | None = None,
        amount: Annotated[Decimal | None, Query(gt=0, le=100_000, decimal_places=2)] = None,
    ) -> dict[str, Any]:
        if (litres is None) == (amount is None):
            raise HTTPException(422, "give litres or amount")
        sim = site_of(station)
        ml = None if litres is None else int(litres * 1000)
        fen = None if amount is None else int(amount * 100)
        return done(sim, await sim.operate(lambda: sim.site.authorise(pump, preset_ml=ml, preset_fen=fen)))

    @app.post("/sites/{station}/pumps/{pump}/fuel")
    async def fuel(
        station: int,
        pump: int,
        litres: Litres,
        wait: bool = False,
        timeout: Annotated[float, Query(gt=0, le=600)] = 120.0,
    ) -> dict[str, Any]:
        sim = site_of(station)
        events = await sim.operate(lambda: sim.site.fuel(pump, int(litres * 1000)))
        if wait:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                f = sim.site.point(pump).fuelling
                if f is None or f.to_dispense_ml == 0 or _at_preset(sim, pump):
                    break
                await asyncio.sleep(0.05)
        return done(sim, events)

    @app.post("/sites/{station}/pumps/{pump}/hangup")
    async def hang_up(station: int, pump: int) -> dict[str, Any]:
        sim = site_of(station)
        return done(sim, await sim.operate(lambda: sim.site.hang_up(pump, datetime.now(UTC))))

    @app.post("/sites/{station}/pumps/{pump}/cashier")
    async def cashier(station: int, pump: int, site_tx_id: str | None = None) -> dict[str, Any]:
        sim = site_of(station)
        return done(sim, await sim.operate(lambda: sim.site.pay_at_cashier(pump, site_tx_id)))

    @app.post("/sites/{station}/prices/{grade}")
    async def set_price(
        station: int, grade: str, price: Annotated[Decimal, Query(gt=0, le=1000, decimal_places=2)]
    ) -> dict[str, Any]:
        """A price change at the site (the station's price board): later fuellings are sold at it."""
        sim = site_of(station)
        return done(sim, await sim.operate(lambda: sim.site.set_price(grade, int(price * 100))))

    @app.post("/sites/{station}/pumps/{pump}/{action}")
    async def fp_command(
        station: int, pump: int, action: Literal["suspend", "resume", "open", "close"]
    ) -> dict[str, Any]:
        sim = site_of(station)
        fn = getattr(sim.site, action)
        return done(sim, await sim.operate(lambda: fn(pump)))

    @app.post("/sites/{station}/link/{action}")
    async def link(station: int, action: Literal["drop", "offline", "online"]) -> dict[str, Any]:
        sim = site_of(station)
        if action == "online":
            sim.go_online()
        else:
            await sim.drop_link(stay_offline=action == "offline")
        return sim.snapshot()

    @app.get("/sites/{station}/link/wait")
    async def wait_link(
        station: int, online: bool = True, timeout: Annotated[float, Query(gt=0, le=120)] = 10.0
    ) -> dict[str, Any]:
        sim = site_of(station)
        deadline = time.monotonic() + timeout
        while sim.connected.is_set() != online:
            if time.monotonic() > deadline:
                raise HTTPException(
                    504, f"site {station} not {'online' if online else 'offline'} in {timeout} s"
                )
            await asyncio.sleep(0.05)
        return sim.snapshot()

    return app


def _at_preset(sim: SimulatedSite, pump: int) -> bool:
    fp = sim.site.point(pump)
    f = fp.fuelling
    if f is None:
        return True
    if f.preset_ml is not None and f.volume_ml >= f.preset_ml:
        return True
    if f.preset_fen is not None:
        price = fp.nozzles[f.nozzle].price_fen
        return (f.volume_ml + 1) * price > f.preset_fen * 1000 - 500
    return False
