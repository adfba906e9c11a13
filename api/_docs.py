"""The API's contract as clients see it: /openapi.json, and /docs and /redoc served from this server.

The schema is FastAPI's, finished here once per app:
- the limits that come from the settings (`limit` up to FUEL_MAX_LIMIT, `radius_m` up to
  FUEL_MAX_RADIUS_M, ...) are written in as this server's maximum (parameters mark them with
  api._params.SETTING_MAXIMUM / SETTING_MAX_ITEMS);
- an optional query parameter is typed as its value (a query string has no null): `number`, not
  `number | null`.
/docs (Swagger UI) and /redoc load their scripts and styles from api/static/dist, copied there from the
npm packages swagger-ui-dist and redoc by `make -C web build`: nothing is fetched from another host
(no CDN, no fonts, no validator badge), so the docs work offline and behind the Great Firewall.
They follow settings.docs_served, as /openapi.json does.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse

from api._params import SETTING_MAX_ITEMS, SETTING_MAXIMUM
from config import Settings

DIST = Path(__file__).resolve().parent / "static" / "dist"
SWAGGER_JS = "swagger-ui/swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui/swagger-ui.css"
FAVICON = "swagger-ui/favicon-32x32.png"
REDOC_JS = "redoc/redoc.standalone.js"

DESCRIPTION = """
Lijiang (丽江) is the default region; a server without its extract serves the demo region it names in
`served_note`.

**Coordinates.** WGS-84 by default; `coord=gcj02` (WeChat and Chinese map SDKs) or `coord=bd09`
(Baidu) applies to a request's input and output. GeoJSON and OSRM coordinates are `[lon, lat]`;
everything else is `lat, lon`.

**Times.** ISO-8601; a time without an offset is the region's local time (Asia/Shanghai).

**Errors.** Every error is `{"error": {"code", "message", ...}}`. A 422 names the parameter or body
field at fault in `param` (and every one in `errors`) and the rule it breaks in `message`. 401: no or
a bad API key; 403: the key may not do this; 409: a stale version (the body names the current one);
428: a write without a version; 429 and 503 carry `Retry-After`. The OSRM services (`/route/v1`,
`/table/v1`, `/nearest/v1`) answer in OSRM's own shape, `{"code", "message"}`.

**Keys.** The manager API and the traffic feed need an `X-API-Key` header. Every `/v1/` and OSRM
request counts against a per-client rate limit (the key's, or the address's).
"""

TAGS = [
    {"name": "stations", "description": "Stations near a point, along a route, in a box; one station."},
    {"name": "routing", "description": "Traffic-aware routes, travel-time matrices and live traffic."},
    {"name": "map", "description": "The map screen: price heatmap or markers, roads, the region."},
    {"name": "manage", "description": "Station managers: prices, promotions, details (API key, If-Match)."},
    {"name": "osrm", "description": "OSRM v5 route, table and nearest (Project-OSRM docs/http.md)."},
    {"name": "ops", "description": "Liveness and readiness probes."},
]


def install(app: FastAPI, settings: Settings) -> None:
    """The finished schema as app.openapi, and /docs and /redoc when settings.docs_served."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = finish(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    summary=app.summary,
                    description=DESCRIPTION,
                    routes=app.routes,
                    tags=TAGS,
                ),
                settings,
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    if not settings.docs_served:
        return

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        missing = _missing(SWAGGER_JS, SWAGGER_CSS)
        if missing:
            return missing
        root = request.scope.get("root_path", "")
        return _own_host_only(
            get_swagger_ui_html(
                openapi_url=f"{root}/openapi.json",
                title=f"{app.title} - API",
                swagger_js_url=f"{root}/static/dist/{SWAGGER_JS}",
                swagger_css_url=f"{root}/static/dist/{SWAGGER_CSS}",
                swagger_favicon_url=f"{root}/static/dist/{FAVICON}",
                swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from swagger.io
            )
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        missing = _missing(REDOC_JS)
        if missing:
            return missing
        root = request.scope.get("root_path", "")
        return _own_host_only(
            get_redoc_html(
                openapi_url=f"{root}/openapi.json",
                title=f"{app.title} - API",
                redoc_js_url=f"{root}/static/dist/{REDOC_JS}",
                redoc_favicon_url=f"{root}/static/dist/{FAVICON}",
                with_google_fonts=False,
            )
        )


_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def _own_host_only(page: HTMLResponse) -> HTMLResponse:
    """The page with a Content-Security-Policy that lets the browser load nothing from another host
    (Redoc's sidebar would fetch its logo from cdn.redoc.ly): our scripts, the page's own inline
    script by its hash, inline styles (both UIs set them), images as data: URLs, workers from blob:."""
    html = bytes(page.body).decode()
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
        for s in _INLINE_SCRIPT.findall(html)
    )
    page.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    return page


def _missing(*assets: str) -> Any:
    """A 503 naming the build step when the web assets are not built."""
    absent = [a for a in assets if not (DIST / a).is_file()]
    if not absent:
        return None
    return JSONResponse(
        {
            "error": {
                "code": "DocsNotBuilt",
                "message": f"the docs' assets are not built ({', '.join(absent)}): run `make -C web build`",
            }
        },
        status_code=503,
    )


def finish(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Settings-driven limits written in; optional query and header parameters typed as their value;
    no FastAPI validation error body where the service never answers one (the OSRM services)."""
    for path in schema.get("paths", {}).values():
        for op in path.values():
            if not isinstance(op, dict):
                continue
            for param in op.get("parameters", []):
                if param.get("in") in ("query", "header"):
                    param["schema"] = _drop_null(param.get("schema", {}))
            default_422 = op.get("responses", {}).get("422", {})
            if "HTTPValidationError" in str(default_422):
                del op["responses"]["422"]
    components = schema.get("components", {}).get("schemas", {})
    if "HTTPValidationError" not in str(schema.get("paths")):
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
    _settings_limits(schema, settings)
    return schema


def _drop_null(schema: dict[str, Any]) -> dict[str, Any]:
    """{"anyOf": [X, {"type": "null"}], ...} -> X with the rest (title, default, description) kept."""
    options = schema.get("anyOf")
    if not isinstance(options, list):
        return schema
    kept = [o for o in options if o != {"type": "null"}]
    if len(kept) != 1 or len(kept) == len(options):
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**kept[0], **rest}


def _settings_limits(node: Any, settings: Settings) -> None:
    """Replace every SETTING_MAXIMUM / SETTING_MAX_ITEMS marker with the settings' value."""
    if isinstance(node, dict):
        for marker, key in ((SETTING_MAXIMUM, "maximum"), (SETTING_MAX_ITEMS, "maxItems")):
            name = node.pop(marker, None)
            if isinstance(name, str):
                target = node
                if key == "maximum" and "anyOf" in node:  # a nullable body field: the number branch
                    target = next((o for o in node["anyOf"] if o.get("type") in ("number", "integer")), node)
                if key == "maxItems" and "anyOf" in node:
                    target = next((o for o in node["anyOf"] if o.get("type") == "array"), node)
                target[key] = getattr(settings, name)
        for v in node.values():
            _settings_limits(v, settings)
    elif isinstance(node, list):
        for v in node:
            _settings_limits(v, settings)
