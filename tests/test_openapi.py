"""The contract a client is generated from: /openapi.json types every parameter (numbers as numbers, with
their ranges; choices as enums; required ones required; hand-parsed ones with their pattern), every
success body (a schema with properties, matching what the service answers), every error status with the
service's error body, and the X-API-Key scheme; /docs and /redoc load nothing from another host; bad
input is a 422 in the user's words."""

from __future__ import annotations

import logging
import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, quote_plus

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from api import _models as m
from api._docs import DIST, REDOC_JS, SWAGGER_JS
from api._params import _may_have_blanks
from api.main import create_app
from config import Settings

A, B = "42.5063,1.5218", "42.5347,1.5800"  # Andorra la Vella, Encamp (demo region)
AT = "2026-11-25T08:00:00+08:00"
NEARBY = {"lat": 42.5063, "lon": 1.5218, "radius_m": 20000, "at": AT}
# query parameters that are numeric quantities, by name
NUMERIC = re.compile(
    r"^(lat|lon|limit|zoom|after|alternatives|number|version|litres|fill_level|.*_(m|km|s|cny|l|h|100km|id))$"
)
KEYED = {  # (method, path) of the endpoints that take an API key
    ("get", "/v1/manage/ceilings"),
    ("get", "/v1/manage/stations/{station_id}"),
    ("patch", "/v1/stations/{station_id}"),
    ("put", "/v1/stations/{station_id}/prices"),
    ("post", "/v1/stations/{station_id}/promotions"),
    ("get", "/v1/promotions/{promotion_id}"),
    ("put", "/v1/promotions/{promotion_id}"),
    ("delete", "/v1/promotions/{promotion_id}"),
    ("post", "/v1/traffic"),
    ("delete", "/v1/traffic"),
    ("get", "/v1/stations/{station_id}/devices"),
    ("put", "/v1/stations/{station_id}/devices"),
    ("post", "/v1/stations/{station_id}/payments/{out_trade_no}/reprint"),
    ("get", "/v1/stations/{station_id}/payments/{out_trade_no}/deliveries"),
    ("put", "/v1/stations/{station_id}/seller"),
    ("get", "/v1/stations/{station_id}/seller"),
    ("post", "/v1/payments/{out_trade_no}/refunds"),
    ("get", "/v1/payments/{out_trade_no}/refunds"),
    ("get", "/v1/payments/cases"),
    ("get", "/v1/payments/cases/{case_id}"),
    ("post", "/v1/payments/cases/{case_id}/resolve"),
    ("get", "/v1/risk/reviews"),
    ("get", "/v1/risk/decisions/{decision_id}"),
    ("post", "/v1/risk/decisions/{decision_id}/review"),
    ("get", "/v1/risk/rules"),
    ("put", "/v1/risk/rules/{name}"),
    ("delete", "/v1/risk/rules/{name}/override"),
    ("get", "/v1/risk/lists"),
    ("post", "/v1/risk/lists"),
    ("delete", "/v1/risk/lists/{entry_id}"),
}
USER = {  # (method, path) of the endpoints that take a user's session token
    ("get", "/v1/me"),
    ("get", "/v1/users/{user_id}"),
    ("get", "/v1/nozzles/{token}"),
    ("get", "/v1/stations/{station_id}/pumps"),
    ("post", "/v1/fuelling/sessions"),
    ("get", "/v1/fuelling/sessions/{session_id}"),
    ("post", "/v1/fuelling/sessions/{session_id}/cancel"),
    ("get", "/v1/fuelling/sessions/{session_id}/events"),
    ("post", "/v1/sales/{sale_id}/pay"),
    ("post", "/v1/fuelling/sessions/{session_id}/pay"),
    ("post", "/v1/payments/{out_trade_no}/invoice"),
    ("get", "/v1/payments/{out_trade_no}/invoice"),
    ("post", "/v1/payments/demo/confirm"),
    ("get", "/v1/me/records"),
    ("get", "/v1/me/records.csv"),
    ("get", "/v1/me/records/summary"),
    ("get", "/v1/me/records/{record_id}"),
    ("put", "/v1/me/records/{record_id}/odometer"),
    ("get", "/v1/me/membership"),
    ("delete", "/v1/me"),
    ("get", "/v1/me/points"),
}
OPTIONAL_USER = {  # public reads that price for the member whose session token comes with them
    ("get", "/v1/stations/nearby"),
    ("get", "/v1/stations/{station_id}"),
    ("get", "/v1/stations/along-route"),
    ("post", "/v1/stations/along-route"),
}
CSV = {("get", "/v1/me/records.csv")}  # a success body that is text/csv, not JSON


@pytest.fixture(scope="module")
def spec(client: TestClient) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    return dict(r.json())


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in spec["paths"].items() for method, op in ops.items()]


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def param(op: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in op["parameters"] if p["name"] == name)


# ---- parameters ------------------------------------------------------------------------------------


def test_no_numeric_query_parameter_is_a_string(spec: dict[str, Any]) -> None:
    checked = []
    for method, path, op in operations(spec):
        for p in op.get("parameters", []):
            if p["in"] in ("query", "path") and NUMERIC.match(p["name"]):
                checked.append((path, p["name"]))
                types = {b.get("type") for b in p["schema"].get("anyOf", [p["schema"]])}
                assert types & {"number", "integer"} and "string" not in types, (method, path, p)
    assert len(checked) >= 37  # nearby, along-route, stations, route, map, traffic, manage, OSRM
    nearby = spec["paths"]["/v1/stations/nearby"]["get"]
    assert {"minimum": -90, "maximum": 90}.items() <= param(nearby, "lat")["schema"].items()
    assert {"minimum": -180, "maximum": 180}.items() <= param(nearby, "lon")["schema"].items()
    assert param(nearby, "radius_m")["schema"]["exclusiveMinimum"] == 0
    assert {"minimum": 0, "exclusiveMaximum": 1}.items() <= param(nearby, "fill_level")["schema"].items()


def test_required_parameters_choices_and_patterns(spec: dict[str, Any]) -> None:
    nearby = spec["paths"]["/v1/stations/nearby"]["get"]
    assert param(nearby, "lat")["required"] and param(nearby, "lon")["required"]
    assert not param(nearby, "radius_m").get("required")
    for path in ("/v1/route", "/v1/stations/along-route"):
        op = spec["paths"][path]["get"]
        for name in ("from", "to"):
            p = param(op, name)
            assert p["required"] and p["schema"]["type"] == "string" and p["schema"]["pattern"], (path, p)
            assert re.match(p["schema"]["pattern"], "26.8721,100.2297")
            assert not re.match(p["schema"]["pattern"], "26.8721")
    for path in ("/v1/stations", "/v1/map/stations", "/v1/map/roads", "/v1/traffic"):
        p = param(spec["paths"][path]["get"], "bbox")
        assert p["required"] and re.match(p["schema"]["pattern"], "100.18,26.82,100.28,26.92")
    choices = {"sort", "grade", "coord", "format"}
    seen = set()
    for _, path, op in operations(spec):
        for p in op.get("parameters", []):
            if p["in"] == "query" and p["name"] in choices and not path.startswith(("/route/", "/table/")):
                seen.add(p["name"])
                assert p["schema"].get("enum"), (path, p)
    assert seen == choices
    assert param(nearby, "grade")["schema"]["enum"] == ["89", "92", "95", "98", "0"]
    assert param(nearby, "coord")["schema"]["enum"] == ["wgs84", "gcj02", "bd09"]
    osrm = spec["paths"]["/route/v1/{profile}/{coordinates}"]["get"]
    assert param(osrm, "geometries")["schema"]["enum"] == ["polyline", "polyline6", "geojson"]
    assert (
        param(spec["paths"]["/nearest/v1/{profile}/{coordinates}"]["get"], "number")["schema"]["type"]
        == "integer"
    )


def test_limits_from_the_settings_are_the_schemas_maxima(demo_settings: Settings) -> None:
    s = demo_settings.model_copy(update={"max_limit": 50, "max_radius_m": 8000.0, "max_matrix_sources": 7})
    spec = create_app(s).openapi()
    nearby = spec["paths"]["/v1/stations/nearby"]["get"]
    assert param(nearby, "limit")["schema"]["maximum"] == 50
    assert param(nearby, "radius_m")["schema"]["maximum"] == 8000.0
    assert spec["components"]["schemas"]["MatrixRequest"]["properties"]["sources"]["maxItems"] == 7
    assert "x-maximum-setting" not in str(spec) and "x-max-items-setting" not in str(spec)


# ---- bodies ----------------------------------------------------------------------------------------


def test_every_success_body_has_a_schema_with_properties(spec: dict[str, Any]) -> None:
    for method, path, op in operations(spec):
        for status, resp in op["responses"].items():
            if not status.startswith("2") or status == "204":
                continue
            if (method, path) in CSV:
                assert resp["content"]["text/csv"]["schema"] == {"type": "string"}
                continue
            schema = resolve(spec, resp["content"]["application/json"]["schema"])
            branches = schema.get("anyOf") or schema.get("oneOf") or [schema]
            for branch in branches:
                assert resolve(spec, branch).get("properties"), (method, path, status, branch)
        if path.startswith(("/route/", "/table/", "/nearest/")):
            ok = resolve(spec, op["responses"]["200"]["content"]["application/json"]["schema"])
            assert "code" in ok["properties"] and "code" in ok["required"]


def test_every_error_status_is_documented_with_the_error_body(spec: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in str(spec)
    for method, path, op in operations(spec):
        statuses = set(op["responses"])
        if path.startswith(("/v1/", "/route/", "/table/", "/nearest/")):
            assert "429" in statuses, (method, path)
        if (path.startswith("/v1/") and op.get("parameters")) or "requestBody" in op:
            assert "422" in statuses, (method, path)
        if "requestBody" in op:
            assert {"400", "413"} <= statuses, (method, path)  # unreadable, too large
        if (method, path) in KEYED:
            assert {"401", "403"} <= statuses, (method, path)
        if (method, path) in USER:
            assert "401" in statuses, (method, path)
            assert op["responses"]["401"]["headers"]["WWW-Authenticate"]["description"] == "Bearer"
        for status, resp in op["responses"].items():
            if status[0] in "45" and path != "/ready":  # /ready answers its checks
                ref = resp["content"]["application/json"]["schema"]["$ref"]
                osrm_own = path.startswith(("/route/", "/table/", "/nearest/")) and status in ("400", "503")
                expected = "OsrmErrorBody" if osrm_own else "ErrorBody"
                assert ref.endswith("/" + expected), (method, path, status, ref)
    writes = spec["paths"]["/v1/stations/{station_id}/prices"]["put"]["responses"]
    assert {"401", "403", "404", "409", "413", "422", "428", "429", "503"} <= set(writes)
    held = resolve(spec, writes["202"]["content"]["application/json"]["schema"])  # a price held for review
    assert {"held", "decision_id", "decision_ids", "prices", "version"} <= set(held["properties"])
    assert "ETag" in writes["202"]["headers"]
    error = resolve(spec, {"$ref": "#/components/schemas/ErrorPublic"})
    assert {"code", "message"} <= set(error["required"]) and "param" in error["properties"]


def test_the_api_key_scheme_is_declared_where_a_key_is_taken(spec: dict[str, Any]) -> None:
    scheme = spec["components"]["securitySchemes"]["ApiKey"]
    assert scheme == scheme | {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    keyed = {
        (method, path) for method, path, op in operations(spec) if op.get("security") == [{"ApiKey": []}]
    }
    assert keyed == KEYED
    user = {
        (method, path) for method, path, op in operations(spec) if op.get("security") == [{"UserToken": []}]
    }
    assert user == USER
    console = ([{"ConsoleSession": []}], [{"ConsoleSession": []}, {"ApiKey": []}])  # the station console
    optional = {
        (method, path)
        for method, path, op in operations(spec)
        if op.get("security") == [{"UserToken": []}, {}]
    }
    assert optional == OPTIONAL_USER
    assert all(
        op.get("security") in (None, [{"ApiKey": []}], [{"UserToken": []}], [{"UserToken": []}, {}], *console)
        for _, _, op in operations(spec)
    )
    token = spec["components"]["securitySchemes"]["UserToken"]
    assert token == token | {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


# ---- what the service answers matches the schema ---------------------------------------------------

ANSWERS: list[tuple[str, dict[str, Any], type[BaseModel]]] = [
    ("/v1/stations/nearby", NEARBY, m.NearbyPublic),
    ("/v1/stations/nearby", {**NEARBY, "grade": "92", "sort": "score", "limit": 5}, m.NearbyPublic),
    ("/v1/stations/nearby", {**NEARBY, "sort": "eta", "limit": 5}, m.NearbyPublic),
    (
        "/v1/stations/nearby",
        {**NEARBY, "grade": "92", "sort": "total_cost", "tank_l": 50, "fill_level": 0.25},
        m.NearbyPublic,
    ),
    ("/v1/stations/nearby", {"lat": 26.87, "lon": 100.2}, m.NearbyPublic),
    ("/v1/stations/1", {"at": AT, "coord": "gcj02"}, m.StationByIdPublic),
    ("/v1/stations", {"bbox": "1.4,42.4,1.8,42.7", "limit": 5}, m.StationListPublic),
    ("/v1/stations/along-route", {"from": A, "to": B, "depart_at": AT, "grade": "95"}, m.AlongRoutePublic),
    ("/v1/stations/along-route", {"from": A, "to": B, "depart_at": AT, "sort": "along"}, m.AlongRoutePublic),
    ("/v1/route", {"from": A, "to": B, "depart_at": AT, "alternatives": 2}, m.RoutePublic),
    ("/v1/route", {"from": A, "to": B, "geometries": "all", "alternatives": 1}, m.RoutePublic),
    ("/v1/route", {"from": A, "to": B, "format": "wechat", "alternatives": 1}, m.RouteWechatPublic),
    ("/v1/map/stations", {"bbox": "1.4,42.4,1.8,42.7", "zoom": 9}, m.MapStationsPublic),
    ("/v1/map/stations", {"bbox": "1.45,42.45,1.6,42.55", "zoom": 14, "grade": "95"}, m.MapStationsPublic),
    (
        "/v1/map/stations",
        {"bbox": "1.45,42.45,1.6,42.55", "zoom": 14, "format": "wechat"},
        m.MapStationsWechatPublic,
    ),
    (
        "/v1/map/stations",
        {"bbox": "1.4,42.4,1.8,42.7", "zoom": 10, "format": "wechat"},
        m.MapStationsWechatPublic,
    ),
    ("/v1/map/roads", {"bbox": "1.50,42.50,1.53,42.52", "zoom": 15}, m.MapRoadsPublic),
    ("/v1/map/region", {"coord": "gcj02"}, m.RegionPublic),
    ("/v1/traffic", {"bbox": "1.50,42.50,1.53,42.52", "limit": 20}, m.TrafficPublic),
    ("/health", {}, m.HealthPublic),
    ("/ready", {}, m.ReadyPublic),
    (
        "/route/v1/driving/1.5218,42.5063;1.58,42.5347",
        {"steps": "true", "annotations": "true"},
        m.OsrmRouteResponse,
    ),
    (
        "/table/v1/driving/1.5218,42.5063;1.58,42.5347",
        {"annotations": "duration,distance"},
        m.OsrmTableResponse,
    ),
    ("/nearest/v1/driving/1.5218,42.5063", {"number": "3"}, m.OsrmNearestResponse),
]


@pytest.mark.parametrize(("path", "params", "model"), ANSWERS)
def test_success_bodies_match_their_models(
    client: TestClient,
    caplog: pytest.LogCaptureFixture,
    path: str,
    params: dict[str, Any],
    model: type[BaseModel],
) -> None:
    with caplog.at_level(logging.ERROR, logger="api"):
        r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    model.model_validate(r.json())  # every key declared, every type right (extra keys are refused)
    assert "does not match its schema" not in caplog.text


def test_matrix_body_matches_its_model(client: TestClient) -> None:
    r = client.post("/v1/matrix", json={"sources": [[42.5063, 1.5218], [42.5347, 1.58]], "depart_at": AT})
    assert r.status_code == 200, r.text
    m.MatrixPublic.model_validate(r.json())


def test_along_route_post_of_a_wechat_route_matches_its_model(client: TestClient) -> None:
    wechat = client.get("/v1/route", params={"from": A, "to": B, "format": "wechat"}).json()
    json_ = client.get("/v1/route", params={"from": A, "to": B, "geometries": "polyline6"}).json()
    for body in ({"geometry": wechat["polyline"][0]["points"]}, {"polyline6": json_["polyline6"]}):
        r = client.post("/v1/stations/along-route", json=body | {"depart_at": AT, "grade": "92"})
        assert r.status_code == 200, r.text
        m.AlongRoutePublic.model_validate(r.json())


def test_a_body_out_of_step_with_its_model_is_still_answered_and_logged(
    demo_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(demo_settings)

    @app.get("/v1/out-of-step", response_model=m.HealthPublic)
    def out_of_step() -> dict[str, Any]:
        return {"status": "ok", "undeclared": 1}

    with TestClient(app) as c, caplog.at_level(logging.ERROR, logger="api"):
        r = c.get("/v1/out-of-step")
    assert r.status_code == 200 and r.json() == {"status": "ok", "undeclared": 1}
    assert "does not match its schema" in caplog.text


# ---- bad input in the user's words ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "param_", "message"),
    [
        ("/v1/stations/nearby", {"lat": 91, "lon": 1.5}, "lat", "must be between -90 and 90, got 91"),
        (
            "/v1/stations/nearby",
            {"lat": "abc", "lon": 1.5},
            "lat",
            "must be a number between -90 and 90, got 'abc'",
        ),
        ("/v1/stations/nearby", {"lat": "nan", "lon": 1.5}, "lat", "must be a finite number"),
        ("/v1/stations/nearby", {"lon": 1.5}, "lat", "is required"),
        ("/v1/stations/nearby", {**NEARBY, "limit": "ten"}, "limit", "must be an integer between 1 and 200"),
        ("/v1/stations/nearby", {**NEARBY, "limit": 0}, "limit", "must be between 1 and 200, got 0"),
        (
            "/v1/stations/nearby",
            {**NEARBY, "radius_m": 0},
            "radius_m",
            "must be more than 0 and at most 50000",
        ),
        (
            "/v1/stations/nearby",
            {**NEARBY, "grade": "93"},
            "grade",
            "must be one of 89, 92, 95, 98, 0, got '93'",
        ),
        (
            "/v1/stations/nearby",
            {**NEARBY, "member": "maybe"},
            "member",
            "must be true or false, got 'maybe'",
        ),
        (
            "/v1/map/stations",
            {"bbox": "1.4,42.4,1.8,42.7", "zoom": "12.5"},
            "zoom",
            "must be an integer between 0 and 22",
        ),
        (
            "/v1/route",
            {"from": A, "to": B, "format": "xml"},
            "format",
            "must be one of json, wechat, got 'xml'",
        ),
    ],
)
def test_bad_query_values_are_named_in_words(
    client: TestClient, path: str, params: dict[str, Any], param_: str, message: str
) -> None:
    r = client.get(path, params=params)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "InvalidInput" and err["param"] == param_
    assert message in err["message"] and err["message"].startswith(f"{param_}: ")
    assert err["errors"][0]["param"] == param_


def test_body_errors_are_in_words_too(client: TestClient) -> None:
    cases = [
        ({"sources": [["a", 1.5]]}, "sources[0][0]", "must be a number"),
        ({"sources": []}, "sources", "needs at least 1 item, got 0"),
        ({"sources": [[42.5, 1.5]], "x": 1}, "x", "is not a field of this request"),
        ({"sources": [[42.5, 1.5]], "coord": "utm"}, "coord", "must be one of wgs84, gcj02, bd09"),
    ]
    for body, param_, message in cases:
        r = client.post("/v1/matrix", json=body)
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["param"] == param_ and message in err["message"], err
    r = client.post("/v1/matrix", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["error"]["message"]
    for problem in ("Input should", "Field required", "Value error", "Extra inputs"):
        assert all(problem not in client.post("/v1/matrix", json=b).text for b, _, _ in cases)


def test_blank_query_values_mean_absent(client: TestClient) -> None:
    plain = client.get("/v1/stations/nearby", params=NEARBY)
    blank = client.get(
        "/v1/stations/nearby", params={**NEARBY, "grade": "", "sort": " ", "limit": "", "coord": ""}
    )
    assert plain.status_code == blank.status_code == 200
    assert (
        blank.json()["query"] == plain.json()["query"] and blank.json()["results"] == plain.json()["results"]
    )
    assert client.get("/v1/stations/nearby", params={**NEARBY, "lat": ""}).json()["error"]["param"] == "lat"


def test_choices_are_case_insensitive_and_grades_take_their_sign(client: TestClient) -> None:
    r = client.get(
        "/v1/stations/nearby", params={**NEARBY, "grade": "95#", "sort": "PRICE", "coord": "GCJ02"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["query"]["grade"] == "95" and r.json()["query"]["sort"] == "price"
    assert r.json()["coord"] == "gcj02"


# ---- /docs and /redoc ------------------------------------------------------------------------------


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.refs += [v for k, v in attrs if k in ("src", "href", "spec-url") and v]


def test_docs_and_redoc_load_nothing_from_another_host(client: TestClient) -> None:
    if not (DIST / SWAGGER_JS).is_file() or not (DIST / REDOC_JS).is_file():
        pytest.skip("docs assets are not built (run `make -C web build`)")
    for page in ("/docs", "/redoc"):
        r = client.get(page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), page
        assert "://" not in r.text, page  # no outside host: not in a tag, not in the inline script
        parser = _Refs()
        parser.feed(r.text)
        assert parser.refs, page
        for ref in parser.refs:
            assert ref.startswith("/") and not ref.startswith("//"), (page, ref)
            asset = client.get(ref)
            assert asset.status_code == 200 and asset.content, (page, ref)
    assert '"validatorUrl": null' in client.get("/docs").text  # Swagger UI's badge would ask swagger.io


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    pairs=st.lists(
        st.tuples(
            st.text(alphabet="abcxyz_=", min_size=0, max_size=4),
            st.one_of(st.text(max_size=4), st.sampled_from(["", " ", "\t", "\xa0", "\u3000", " 1"])),
            st.booleans(),
        ),
        max_size=5,
    )
)
def test_the_blank_precheck_never_misses_a_blank_value(pairs: list[tuple[str, str, bool]]) -> None:
    """BlankQueryIsAbsent parses a query string only when _may_have_blanks says it may hold a blank value."""
    raw = "&".join(quote_plus(k) + ("=" + quote_plus(v) if with_eq else "") for k, v, with_eq in pairs)
    parsed = parse_qsl(raw, keep_blank_values=True, encoding="latin-1")
    if any(not v.strip() for _, v in parsed):
        assert _may_have_blanks(raw.encode("latin-1"))
