"""The FastAPI app. Thin: parse and validate, call geo and store, shape the output."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import anyio
from fastapi import Depends, FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from api import (
    _cases,
    _ceilings,
    _console,
    _console_live,
    _devices,
    _docs,
    _errors,
    _forecourt,
    _fuelling,
    _invoices,
    _manage,
    _map,
    _osrm,
    _paydemo,
    _payments,
    _points,
    _ranking,
    _records,
    _refunds,
    _risk,
    _risk_admin,
    _routing,
    _security,
    _stations,
    _users,
)
from api._graph import load_router
from api._live import LiveHub
from api._models import HealthPublic, ReadyPublic
from api._params import BlankQueryIsAbsent
from api._readscope import ReadYourWrites
from api._state import AppState, get_state
from api._sync import TrafficSync
from config import Settings, get_settings, resolve_served_region
from devices import register_device_hooks
from geo._graphcache import graph_identity
from payments._points import register_points_hooks
from store import Database
from store._sessions import register_payment_hooks
from store._station_feed import StationFeed

log = logging.getLogger("api")
STATIC_DIR = Path(__file__).resolve().parent / "static"
GZIP_MIN_BYTES = 1_000  # answers (JSON, GeoJSON, the page's assets) this size or more are gzipped when asked


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        served = resolve_served_region(settings)
        db = Database(
            settings.service_url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            timeout_s=settings.db_timeout_s,
            statement_timeout_s=settings.db_statement_timeout_s,
            work_deadline_s=settings.db_work_deadline_s,
            cancel_timeout_s=settings.db_cancel_timeout_s,
            max_concurrent=settings.db_max_concurrent,
            queue_wait_s=settings.db_queue_wait_s,
            keepalives_idle_s=settings.db_keepalives_idle_s,
            keepalives_interval_s=settings.db_keepalives_interval_s,
            keepalives_count=settings.db_keepalives_count,
            tcp_user_timeout_s=settings.db_tcp_user_timeout_s,
            read_urls=settings.service_read_urls,
            replica_max_lag_s=settings.replica_max_lag_s,
            replica_max_lag_bytes=settings.replica_max_lag_bytes,
            replica_check_interval_s=settings.replica_check_interval_s,
            replica_check_timeout_s=settings.replica_check_timeout_s,
        )
        db.open()
        # Sync endpoints run in anyio's thread pool: sized to the database pool (settings.threads).
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        state = AppState(settings=settings, served=served, db=db)
        app.state.fuel = state
        state.extras["wechat"] = _users.make_wechat_client(state)
        state.router = load_router(settings, served)
        if state.router is not None:
            sync = TrafficSync(
                settings.service_url,
                region=served.region.name,
                graph_hash=graph_identity(state.router.g.meta),
                live=state.router.live,
                db=db,
                keep_s=settings.traffic_max_age_s + settings.traffic_max_ahead_s,
                purge_interval_s=settings.traffic_purge_interval_s,
                purge_limit=settings.traffic_purge_limit,
            )
            sync.start()
            state.extras["sync"] = sync
        register_payment_hooks()  # a sale's lock and payment move the fuelling session that holds it
        register_device_hooks()  # a paid sale prints its receipt and is announced on the station's speaker
        register_points_hooks()  # a sale's payment earns points and posts its redemption; a refund reverses
        hub = LiveHub(
            settings.service_url,
            pool_size=settings.fuelling_live_pool_size,
            queue_size=settings.fuelling_live_queue,
            sweep=lambda: _fuelling.expire_due(state),
            sweep_s=settings.fuelling_sweep_s,
        )
        await hub.start()
        state.extras["live"] = hub
        # nearby answers from memory, kept exact by the primary's notifications (store/_station_feed.py)
        feed = StationFeed(
            settings.service_url,
            max_stations=settings.station_cache_max_stations,
            history=timedelta(hours=settings.station_cache_history_h),
            retry_s=settings.station_cache_retry_s,
            connect_timeout_s=settings.db_timeout_s,
            barrier_timeout_s=settings.db_timeout_s,
        )
        await feed.start()
        state.extras["station_feed"] = feed
        # Everything loaded so far (the router, the app, the libraries) lives as long as the worker:
        # out of the collector's reach, a full collection no longer walks it (it took 50-100 ms, a
        # stall of every request in flight, and came every few seconds under load).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await feed.stop()
            await hub.stop()
            await app.state.limits.limiter.aclose()
            if "sync" in state.extras:
                state.extras["sync"].stop()
            state.extras["wechat"].close()
            db.close()

    app = FastAPI(
        title="Lijiang fuel",
        summary="Fuel stations near you, their prices and promotions, and traffic-aware routes to them.",
        version="0.1.0",
        lifespan=lifespan,
        # API docs and schema: FUEL_DOCS_ENABLED, off in production unless asked for; /docs and /redoc
        # are served from our own assets (api/_docs.py)
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_served else None,
        generate_unique_id_function=lambda route: route.name,  # operationId = the endpoint's name
    )
    app.add_middleware(ReadYourWrites)  # first added, innermost: see api/_readscope.py
    _errors.install(app)
    _docs.install(app, settings)
    app.add_middleware(BlankQueryIsAbsent)
    _security.install(app, settings)
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES)  # outermost: compresses every answer

    @app.get("/health", tags=["ops"], response_model=HealthPublic)
    async def health() -> dict[str, str]:
        """The process is up. Runs on the event loop: it never waits behind database work."""
        return {"status": "ok"}

    @app.get(
        "/ready",
        tags=["ops"],
        response_model=ReadyPublic,
        responses={503: {"model": ReadyPublic, "description": "not ready (Retry-After)"}},
    )
    def ready(state: AppState = Depends(get_state)) -> JSONResponse:
        """The database answers and the region is loaded."""
        checks = {"database": False, "region": state.region.name, "graph": state.router is not None}
        try:
            with state.db.connection() as conn:
                conn.execute("SELECT 1")
            checks["database"] = True
        except Exception as exc:  # the readiness probe reports, it does not raise
            checks["database_error"] = type(exc).__name__
        ok = bool(checks["database"]) and bool(checks["graph"])
        retry = {} if ok else {"Retry-After": str(_errors.RETRY_AFTER_S)}
        return JSONResponse({"ready": ok, **checks}, status_code=200 if ok else 503, headers=retry)

    # [routers] one line per feature module
    app.include_router(_routing.router)
    app.include_router(_ranking.router)  # stations along a route (before _stations: wins over /{id})
    app.include_router(_stations.router)  # stations: nearby, one, bbox
    app.include_router(_manage.router)  # station manager API: prices, promotions, details (API keys)
    app.include_router(_devices.router)  # a station's receipt printer and speaker, reprints (API keys)
    app.include_router(_ceilings.router)  # official price ceilings in force and their staleness (API keys)
    app.include_router(_map.router)  # map screen: stations heatmap/markers, roads, region outline
    app.include_router(_payments.router)  # WeChat Pay notifications
    app.include_router(_invoices.router)  # fuel e-invoices of paid sales, stations' seller identity
    app.include_router(_refunds.router)  # refunds asked for by operators
    app.include_router(_cases.router)  # back-office payment cases: listed and resolved by operators
    app.include_router(_paydemo.router)  # development: the fake WeChat Pay confirms the web page's payment
    app.include_router(_points.router)  # the user's points: balance, holds, expiring, history
    app.include_router(_users.router)  # user centre: WeChat login, session tokens, own account
    app.include_router(
        _records.router
    )  # the driver's e-records, monthly summary, membership, account deletion
    app.include_router(_forecourt.router)  # at the pump: nozzle QR codes, a station's pumps (user token)
    app.include_router(_fuelling.router)  # fuelling sessions: bind a nozzle, follow the pump, live WebSocket
    app.include_router(_console.router)  # station console: staff, live pumps, handovers, reports
    app.include_router(_console_live.router)  # station console: pumps and fill-ups pushed live (WebSocket)
    app.include_router(_risk.router)  # risk review queue (operator keys) and its page /console/review
    app.include_router(_risk_admin.router)  # risk rule overrides and deny/allow lists (operator keys)
    app.include_router(_osrm.router)  # OSRM v5 route/table/nearest (last: its catch-alls shadow nothing)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        """The map page (api/static/index.html)."""
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/console/", include_in_schema=False)
    def console_page() -> FileResponse:
        """The station console (api/static/console/index.html)."""
        return FileResponse(STATIC_DIR / "console" / "index.html", headers={"Cache-Control": "no-cache"})

    return app


app = create_app()
