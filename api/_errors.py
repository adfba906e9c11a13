"""Errors map to HTTP here, and only here. A client error is a 4xx naming what is wrong; never a 500."""

from __future__ import annotations

import logging
import re
import types
from typing import Annotated, Any, Union, get_args, get_origin

import annotated_types
import psycopg
import psycopg_pool
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError, ResponseValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from starlette.exceptions import HTTPException as StarletteHTTPException

from api._auth import Forbidden, PreconditionRequired, Unauthorized
from api._limits import RateLimited
from api._osrm import OsrmError
from api._params import SETTING_MAXIMUM, range_rule
from api._query import QUERY_MODELS
from api._security import request_settings
from api._text import TEXT_PATTERN, TEXT_RULE
from forecourt import CommandTimeout, StationOffline
from geo import BudgetExceeded, Conflict, FuelError, ImplausibleValue, InvalidInput, NotFound, RouteNotFound
from payments import (
    AmountMismatch,
    BadCiphertext,
    ForgedSignature,
    GatewayError,
    IdempotencyKeyInUse,
    PaymentsNotConfigured,
    SaleTaken,
    StaleTimestamp,
    UnknownOrder,
    UnknownSerial,
)
from risk import InvalidRule, RiskError
from store._db import DatabaseBusy
from store._manage import VersionConflict
from store._nozzles import Gone
from store._staff import AccountLocked, LoginFailed
from store._users import UserDeleted
from wechat import InvalidLoginCode, WeChatRateLimited, WeChatUnavailable, WeChatUserBlocked

log = logging.getLogger("api")
RETRY_AFTER_S = 2  # every 503 for database trouble says when to retry
STATION_RETRY_AFTER_S = 10  # a station's link reconnects within seconds of a drop

STATUS: list[tuple[type[Exception], int]] = [
    (StationOffline, 503),  # the station link (forecourt.send_command, fuelling sessions): Retry-After
    (CommandTimeout, 504),  # a command sent to a station, not answered in time: outcome unknown
    (ForgedSignature, 401),  # WeChat Pay notifications (api/_payments.py): refused, nothing recorded
    (UnknownSerial, 401),
    (StaleTimestamp, 401),
    (BadCiphertext, 400),
    (UnknownOrder, 404),
    (AmountMismatch, 409),
    (GatewayError, 502),
    (SaleTaken, 410),  # paying a sale (api/_payments.py): the station settled it another way
    (IdempotencyKeyInUse, 409),
    (StationOffline, 503),  # the station's link is down: retry later
    (CommandTimeout, 503),
    (PaymentsNotConfigured, 503),
    (LoginFailed, 401),  # the station console (api/_console.py): wrong username or password
    (AccountLocked, 429),  # locked after repeated failed logins: Retry-After
    (RiskError, 403),  # risk control refused (RiskDenied) or held (RiskHeld) a bind or a payment
    (InvalidRule, 422),
    (Unauthorized, 401),
    (InvalidLoginCode, 401),
    (Forbidden, 403),
    (UserDeleted, 403),
    (WeChatUserBlocked, 403),
    (Gone, 410),
    (WeChatRateLimited, 429),
    (WeChatUnavailable, 503),
    (PreconditionRequired, 428),
    (InvalidInput, 422),
    (RouteNotFound, 404),
    (NotFound, 404),
    (Conflict, 409),
    (BudgetExceeded, 503),
    (RateLimited, 429),
]


_DECIMAL = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


def _number(v: object) -> object:
    """A decimal string (a price or amount limit) as a JSON number; anything else (a time) as it is."""
    return float(v) if isinstance(v, str) and _DECIMAL.match(v) else v


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
                if isinstance(exc, InvalidInput):  # the shape of the request validation's 422
                    extra["param"] = exc.param
                    extra["errors"] = [{"param": exc.param, "message": exc.message}]
                    if isinstance(exc, ImplausibleValue):  # the broken rule and the allowed range
                        extra.update(exc.details)
                        if isinstance(extra.get("allowed"), dict):  # amounts as numbers, times as text
                            extra["allowed"] = {k: _number(v) for k, v in extra["allowed"].items()}
                    return _body(status, type(exc).__name__, exc.message, **extra)
                if isinstance(exc, RiskError):  # the decision explains itself (GET /v1/risk/decisions/{id})
                    return _body(status, type(exc).__name__, str(exc), decision_id=exc.decision_id)
                if isinstance(exc, VersionConflict):
                    resp = _body(status, "VersionConflict", str(exc), current_version=exc.current_version)
                    resp.headers["ETag"] = f'"{exc.current_version}"'
                    return resp
                resp = _body(status, type(exc).__name__, str(exc))
                retry_after = getattr(exc, "retry_after_s", None)
                if isinstance(retry_after, int):  # RateLimited, WeChat's limit and outages
                    resp.headers["Retry-After"] = str(retry_after)
                if isinstance(exc, Unauthorized):
                    challenge = getattr(exc, "challenge", 'ApiKey header="X-API-Key"')
                    resp.headers["WWW-Authenticate"] = challenge
                if isinstance(exc, BudgetExceeded):
                    resp.headers["Retry-After"] = "1"
                if isinstance(exc, StationOffline):
                    resp.headers["Retry-After"] = str(STATION_RETRY_AFTER_S)
                return resp
        log.exception("unmapped service error")  # the detail (it may name server files) stays in the log
        return _body(503, type(exc).__name__, "the service cannot answer this right now; retry later")

    @app.exception_handler(OsrmError)
    async def _osrm(_: Request, exc: OsrmError) -> JSONResponse:
        """The OSRM-compatible services answer in OSRM's shape (its docs/http.md)."""
        return JSONResponse({"code": exc.code, "message": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        route = request.scope.get("route")
        api_route = route if isinstance(route, APIRoute) else None
        problems = []
        errors = exc.errors()
        for err in errors:
            loc = tuple(err.get("loc", ()))
            field, path, member = _walk(api_route, loc)
            if err.get("type") == "json_invalid":  # its location is a character position, not a field
                path = []
            if member and str(err.get("type")) in _SHAPE_ERRORS and len(errors) > 1:
                continue  # the body fits another shape of a union (a list, not the object): its errors
            problems.append(
                {"param": param_name(path, _body_name(api_route)), "message": in_words(err, field)}
            )
        msg = "; ".join(f"{p['param']}: {p['message']}" for p in problems)
        return _body(
            422, "InvalidInput", msg, param=problems[0]["param"] if problems else None, errors=problems
        )

    @app.exception_handler(ResponseValidationError)
    async def _response_shape(request: Request, exc: ResponseValidationError) -> JSONResponse:
        # The answer is right but its schema is out of date: the client still gets it, the log says so.
        route = request.scope.get("route")
        log.error("response of %s does not match its schema: %s", request.url.path, exc.errors()[:3])
        status = getattr(route, "status_code", None) or 200
        return JSONResponse(jsonable_encoder(exc.body), status_code=status)

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


# ---- validation errors in the user's words ------------------------------------------------------------

_LOCATIONS = ("query", "body", "path", "header")
_DATE_TIME = "must be an ISO-8601 date-time like 2026-11-28T08:30:00+08:00"
_NUMBERS = {
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
}


def in_words(err: dict[str, Any], field: FieldInfo | None = None) -> str:
    """One pydantic validation error as the rule broken, with the value sent: "must be between -90 and
    90, got 91". `field` (the parameter's declaration) lets a range name both of its ends."""
    kind = str(err.get("type", ""))
    ctx = err.get("ctx") or {}
    got = err.get("input")
    if kind == "missing":
        example = (field.examples or [None])[0] if field is not None else None
        return "is required" + (f", e.g. {example}" if example is not None else "")
    lo, lo_open, hi, hi_open = _bounds(field, ctx)
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{range_rule(lo, hi, lo_open=lo_open, hi_open=hi_open)}, got {got}"
    if kind in _NUMBERS:  # "must be a number between -90 and 90, got 'abc'"
        within = "" if lo is None and hi is None else range_rule(lo, hi, lo_open=lo_open, hi_open=hi_open)
        return f"{_NUMBERS[kind]}{within.removeprefix('must be')}, got {got!r}"
    words = {
        "bool_parsing": "must be true or false",
        "bool_type": "must be true or false",
        "decimal_parsing": "must be a decimal number",
        "decimal_type": "must be a decimal number",
        "datetime_parsing": _DATE_TIME,
        "datetime_from_date_parsing": _DATE_TIME,
        "datetime_type": _DATE_TIME,
        "date_parsing": "must be a date like 2026-11-28",
        "date_from_datetime_parsing": "must be a date like 2026-11-28",
        "time_parsing": "must be a time like 08:30",
        "string_type": "must be a string",
        "list_type": "must be a list",
        "tuple_type": "must be a list",
        "dict_type": "must be an object",
        "model_type": "must be an object",
        "model_attributes_type": "must be an object",
    }
    if kind in words:
        return f"{words[kind]}, got {got!r}"
    if kind in ("literal_error", "enum"):
        choices = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"must be one of {choices}, got {got!r}"
    if kind == "string_pattern_mismatch":
        return (
            TEXT_RULE
            if ctx.get("pattern") == TEXT_PATTERN
            else f"must match {ctx.get('pattern')}, got {got!r}"
        )
    if kind in ("too_short", "too_long"):
        n, side = (
            (ctx.get("min_length"), "at least") if kind == "too_short" else (ctx.get("max_length"), "at most")
        )
        return f"needs {side} {n} item{'s' if n != 1 else ''}, got {ctx.get('actual_length')}"
    if kind in ("string_too_short", "string_too_long"):
        n, side = (
            (ctx.get("min_length"), "at least")
            if kind == "string_too_short"
            else (ctx.get("max_length"), "at most")
        )
        return f"must have {side} {n} character{'s' if n != 1 else ''}"
    if kind == "extra_forbidden":
        return "is not a field of this request"
    if kind == "decimal_max_places":
        return f"must have at most {ctx.get('decimal_places')} decimal places, got {got}"
    if kind == "json_invalid":
        return f"the body is not valid JSON: {ctx.get('error', 'malformed')}"
    message = str(err.get("msg", "is not valid"))
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _bounds(field: FieldInfo | None, ctx: dict[str, Any]) -> tuple[Any, bool, Any, bool]:
    """(low, low is open, high, high is open) of a range: from the declaration (a maximum taken from
    the settings included), else from the error."""
    got: dict[str, Any] = dict(ctx)
    for m in field.metadata if field is not None else ():
        for name in ("ge", "gt", "le", "lt"):
            if isinstance(m, getattr(annotated_types, name.capitalize())):
                got[name] = getattr(m, name)
    extra = field.json_schema_extra if field is not None else None
    settings = request_settings()
    if isinstance(extra, dict) and isinstance(extra.get(SETTING_MAXIMUM), str) and settings is not None:
        got.setdefault("le", getattr(settings, str(extra[SETTING_MAXIMUM])))
    lo, lo_open = (got["gt"], True) if "gt" in got else (got.get("ge"), False)
    hi, hi_open = (got["lt"], True) if "lt" in got else (got.get("le"), False)
    return lo, lo_open, hi, hi_open


def _params_of(route: APIRoute) -> dict[tuple[str, str], FieldInfo]:
    """The route's query, path and header parameters, its dependencies' included, by (where, name)."""
    cached: dict[tuple[str, str], FieldInfo] | None = getattr(route, "_fuel_params", None)
    if cached is not None:
        return cached
    out: dict[tuple[str, str], FieldInfo] = {}
    stack = [route.dependant]
    while stack:
        d = stack.pop()
        for where, fields in (
            ("query", d.query_params),
            ("path", d.path_params),
            ("header", d.header_params),
        ):
            for f in fields:
                out.setdefault((where, f.alias), f.field_info)
        stack.extend(d.dependencies)
    model = QUERY_MODELS.get(route.endpoint)  # a query string validated as one model (api/_query.py)
    for name, info in (model.model_fields if model is not None else {}).items():
        out.setdefault(("query", info.alias or name), info)
    route._fuel_params = out  # type: ignore[attr-defined]  # built once per route
    return out


# a value of the wrong JSON type for one shape of a union body (reported for each shape not sent)
_SHAPE_ERRORS = frozenset(("model_type", "model_attributes_type", "list_type", "dict_type", "tuple_type"))


def param_name(path: list[str | int], body: str | None = None) -> str:
    """A parameter as the client wrote it: `prices[0].price_cny`, `sources[2]`, `lat`; a body that is a
    bare list is named `body` (the endpoint's body parameter)."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    if out.startswith("["):
        out = (body or "body") + out
    return out or "request"


def _body_name(route: APIRoute | None) -> str | None:
    f = route.body_field if route is not None else None
    return None if f is None else str(f.alias)


def _walk(route: APIRoute | None, loc: tuple[Any, ...]) -> tuple[FieldInfo | None, list[str | int], bool]:
    """(the declaration of the parameter or body field an error is about, or None; its path as the client
    sent it, without pydantic's names of union members such as `list[PriceCreate]`; whether the error is
    about one member of a union as a whole)."""
    if not loc:
        return None, [], False
    where = loc[0]
    path: list[str | int] = list(loc[1:]) if where in _LOCATIONS else list(loc)
    if route is None or where not in _LOCATIONS or len(loc) < 2:
        return None, path, False
    if where != "body":
        return _params_of(route).get((str(where), str(loc[1]))), path, False
    if route.body_field is None:
        return None, path, False
    path = []
    info: FieldInfo | None = None
    annotation: Any = route.body_field.field_info.annotation
    member = False
    lost = False
    for part in loc[1:]:
        member = False
        if lost:
            path.append(part)
            continue
        annotation, picked = _unwrap(annotation, part)
        if picked:  # pydantic's name of the union member: not the client's
            member = True
            continue
        path.append(part)
        if isinstance(part, int):
            args = get_args(annotation)
            if not args:
                info, lost = None, True
                continue
            info, annotation = None, args[0]
            continue
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        found = (
            None
            if model is None
            else next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        )
        if found is None:
            info, lost = None, True
            continue
        info, annotation = found, found.annotation
    return info, path, member


def _member_name(a: Any) -> str:
    """How pydantic names a union member in an error location: `PricesPut`, `list[PriceCreate]`."""
    while get_origin(a) is Annotated:
        a = get_args(a)[0]
    origin, args = get_origin(a), get_args(a)
    if origin is not None and args:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_member_name(x) for x in args)}]"
    return str(getattr(a, "__name__", repr(a)))


def _unwrap(annotation: Any, part: Any) -> tuple[Any, bool]:
    """X from Annotated[X, ...] and X | None; of a union: the member that has field `part`, or the member
    that `part` names (then True: the part is pydantic's label, not a field)."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        if isinstance(part, str):
            for a in options:
                if _member_name(a) == part:
                    return a, True
            for a in options:
                if isinstance(a, type) and issubclass(a, BaseModel) and _has(a, part):
                    return a, False
        return (options[0] if len(options) == 1 else annotation), False
    return annotation, False


def _has(model: type[BaseModel], name: str) -> bool:
    return any(name in (n, f.alias) for n, f in model.model_fields.items())
