"""Errors map to HTTP here, and only here. A client error is a 4xx naming what is wrong; never a 500."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import psycopg_pool
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api._auth import Forbidden, PreconditionRequired, Unauthorized
from api._limits import RateLimited
from api._osrm import OsrmError
from api._text import TEXT_PATTERN, TEXT_RULE
from geo import BudgetExceeded, Conflict, FuelError, ImplausibleValue, InvalidInput, NotFound, RouteNotFound
from store._db import DatabaseBusy
from store._manage import VersionConflict

log = logging.getLogger("api")
RETRY_AFTER_S = 2  # every 503 for database trouble says when to retry

STATUS: list[tuple[type[Exception], int]] = [
    (Unauthorized, 401),
    (Forbidden, 403),
    (PreconditionRequired, 428),
    (InvalidInput, 422),
    (RouteNotFound, 404),
    (NotFound, 404),
    (Conflict, 409),
    (BudgetExceeded, 503),
    (RateLimited, 429),
]


def _body(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)


def _unavailable(message: str) -> JSONResponse:
    resp = _body(503, "DatabaseUnavailable", message, retry_after_s=RETRY_AFTER_S)
    resp.headers["Retry-After"] = str(RETRY_AFTER_S)
    return resp


def install(app: FastAPI) -> None:
    @app.exception_handler(FuelError)
    async def _fuel(_: Request, exc: FuelError) -> JSONResponse:
        if isinstance(exc, DatabaseBusy):
            return _unavailable(str(exc))
        for cls, status in STATUS:
            if isinstance(exc, cls):
                extra: dict[str, Any] = {}
                if isinstance(exc, InvalidInput):
                    extra["param"] = exc.param
                    if isinstance(exc, ImplausibleValue):  # the broken rule and the allowed range
                        extra.update(exc.details)
                    return _body(status, type(exc).__name__, exc.message, **extra)
                if isinstance(exc, VersionConflict):
                    resp = _body(status, "VersionConflict", str(exc), current_version=exc.current_version)
                    resp.headers["ETag"] = f'"{exc.current_version}"'
                    return resp
                resp = _body(status, type(exc).__name__, str(exc))
                if isinstance(exc, RateLimited):
                    resp.headers["Retry-After"] = str(exc.retry_after_s)
                if isinstance(exc, Unauthorized):
                    resp.headers["WWW-Authenticate"] = 'ApiKey header="X-API-Key"'
                if isinstance(exc, BudgetExceeded):
                    resp.headers["Retry-After"] = "1"
                return resp
        log.exception("unmapped service error")  # the detail (it may name server files) stays in the log
        return _body(503, type(exc).__name__, "the service cannot answer this right now; retry later")

    @app.exception_handler(OsrmError)
    async def _osrm(_: Request, exc: OsrmError) -> JSONResponse:
        """The OSRM-compatible services answer in OSRM's shape (its docs/http.md)."""
        return JSONResponse({"code": exc.code, "message": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "body", "path")]
            message = err.get("msg", "invalid")
            if (
                err.get("type") == "string_pattern_mismatch"
                and (err.get("ctx") or {}).get("pattern") == TEXT_PATTERN
            ):
                message = TEXT_RULE
            problems.append({"param": ".".join(loc) or "request", "message": message})
        msg = "; ".join(f"{p['param']}: {p['message']}" for p in problems)
        return _body(
            422, "InvalidInput", msg, param=problems[0]["param"] if problems else None, errors=problems
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        resp = _body(exc.status_code, "HTTPError", str(exc.detail))
        for k, v in (exc.headers or {}).items():
            resp.headers[k] = v
        return resp

    @app.exception_handler(psycopg_pool.PoolTimeout)
    async def _pool(_: Request, exc: Exception) -> JSONResponse:
        return _unavailable("database unavailable, retry shortly")

    @app.exception_handler(psycopg.DataError)
    async def _data(_: Request, exc: psycopg.DataError) -> JSONResponse:
        # a value the database cannot hold (out-of-range number or date, NUL in text): the input's fault
        log.info("value refused by the database: %s", exc)
        reason = exc.diag.message_primary or str(exc).split("\n", 1)[0] or "a value is out of range"
        return _body(422, "InvalidInput", f"the database refused a value: {reason}", param=None)

    @app.exception_handler(psycopg.OperationalError)
    async def _db(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database error: %s", exc)
        return _unavailable("database unavailable, retry shortly")
