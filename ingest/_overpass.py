"""Overpass API client for `fetch-region`: osmnx's queries, a bounded-retry transport, merge, OSM XML.

What comes from osmnx (2.1.1): the drive-network way filter (`_get_network_filter`), the query
settings string (`_make_overpass_settings`, i.e. ``[out:json][timeout:T]``), the subdivision of a
large polygon into pieces the endpoint accepts (`_make_overpass_polygon_coord_strs`, driven by
``ox.settings.max_query_area_size``) and the amenity=fuel features query
(`_create_overpass_features_query`). The road query is the exact string osmnx's
`_download_overpass_network` sends; a test guards that.

What does not: osmnx's `_overpass_request` retries HTTP 429/504 by sleeping 55 s and recursing without
bound, pauses 60 s when the `/status` endpoint cannot be reached, does not retry timeouts or other 5xx
answers, and reads/writes its own response cache. Here every request is one bounded set of attempts
with exponential backoff, and each failure names the endpoint, the piece and the problem.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import re
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from xml.sax.saxutils import quoteattr

import osmnx as ox
import requests
from osmnx import _http as ox_http
from osmnx import _overpass as ox_overpass
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from tqdm import tqdm

from geo._errors import ExtractError

# HTTP answers worth another attempt: rate limited, or a server/gateway that may recover.
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
ELEMENT_TYPES = ("node", "way", "relation")


class OverpassError(ExtractError):
    """A request to the Overpass endpoint failed (after its retries) or returned unusable data."""

    def __init__(
        self, endpoint: str, problem: str, *, retryable: bool = False, retry_after_s: float | None = None
    ) -> None:
        super().__init__(f"Overpass endpoint {endpoint}: {problem}")
        self.endpoint = endpoint
        self.problem = problem
        self.retryable = retryable
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Query:
    kind: str  # "roads", "restrictions" or "fuel"
    piece: int  # 1-based index of the polygon piece
    text: str  # the Overpass QL sent as `data=`


@dataclass
class Retry:
    attempts: int = 3  # total attempts per request (>= 1)
    backoff_s: float = 5.0  # wait before attempt k+1: backoff_s * 2**(k-1), capped by max_wait_s
    max_wait_s: float = 120.0


def interpreter_url(endpoint: str) -> str:
    """The `/interpreter` URL of an endpoint given either as `.../api` or `.../api/interpreter`."""
    url = endpoint.rstrip("/")
    return url if url.endswith("/interpreter") else url + "/interpreter"


def base_url(endpoint: str) -> str:
    """The endpoint without `/interpreter` (osmnx's `settings.overpass_url` convention)."""
    url = endpoint.rstrip("/")
    return url[: -len("/interpreter")] if url.endswith("/interpreter") else url


@contextlib.contextmanager
def osmnx_settings(
    *, endpoint: str, timeout_s: float, max_query_area_m2: float, cache_dir: Path
) -> Iterator[None]:
    """Point osmnx at our endpoint, timeout and piece size, with its response cache off; restore after."""
    names = (
        "overpass_url",
        "requests_timeout",
        "max_query_area_size",
        "use_cache",
        "cache_only_mode",
        "cache_folder",
        "overpass_rate_limit",
        "log_console",
    )
    saved = {name: getattr(ox.settings, name) for name in names}
    ox.settings.overpass_url = base_url(endpoint)
    # osmnx puts this into the query as [timeout:N]; Overpass QL wants a whole number of seconds.
    ox.settings.requests_timeout = max(math.ceil(timeout_s), 1)
    ox.settings.max_query_area_size = max_query_area_m2
    ox.settings.use_cache = False  # never answer from an old download
    ox.settings.cache_only_mode = False
    ox.settings.cache_folder = cache_dir / "osmnx"
    ox.settings.overpass_rate_limit = False  # our own bounded pause instead (see `slot_pause`)
    ox.settings.log_console = False
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(ox.settings, name, value)


def polygon_pieces(polygon: BaseGeometry) -> list[str]:
    """osmnx's subdivision of the query polygon: Overpass `poly:` coordinate strings, one per piece."""
    if not isinstance(polygon, Polygon | MultiPolygon):
        raise ExtractError(f"region boundary must be a Polygon or MultiPolygon, not {polygon.geom_type}")
    with warnings.catch_warnings():
        # osmnx warns when the area is >10x the piece size; we report the piece count ourselves.
        warnings.simplefilter("ignore", UserWarning)
        return list(ox_overpass._make_overpass_polygon_coord_strs(polygon))


def build_queries(polygon: BaseGeometry) -> list[Query]:
    """Three queries per piece: drivable ways and their nodes, turn restrictions, amenity=fuel."""
    overpass_settings = ox_overpass._make_overpass_settings()
    way_filter = ox_overpass._get_network_filter("drive")
    queries: list[Query] = []
    for i, coords in enumerate(polygon_pieces(polygon), start=1):
        poly = f"(poly:{coords!r})"
        # Verbatim the query of osmnx._overpass._download_overpass_network(polygon, "drive", None).
        queries.append(Query("roads", i, f"{overpass_settings};(way{way_filter}{poly};>;);out;"))
        # The restriction relations that have one of those ways as a member (from/via/to).
        queries.append(
            Query(
                "restrictions", i, f"{overpass_settings};way{way_filter}{poly};rel(bw)[type=restriction];out;"
            )
        )
        fuel = ox_overpass._create_overpass_features_query(coords, {"amenity": "fuel"})
        queries.append(Query("fuel", i, fuel))
    return queries


def slot_pause(endpoint: str, *, timeout_s: float, max_pause_s: float = 60.0) -> float:
    """Seconds to wait for a free slot per the endpoint's `/status` (0 when it says nothing usable)."""
    url = base_url(endpoint) + "/status"
    try:
        text = requests.get(url, timeout=min(timeout_s, 10.0), headers=ox_http._get_http_headers()).text
        status = text.split("\n")[4].split(" ")
    except (requests.RequestException, IndexError):
        return 0.0
    if status[0] == "Slot" and len(status) > 3:
        with contextlib.suppress(ValueError):
            when = dt.datetime.strptime(status[3], "%Y-%m-%dT%H:%M:%SZ,").replace(tzinfo=dt.UTC)
            return float(min(max((when - dt.datetime.now(dt.UTC)).total_seconds(), 1.0), max_pause_s))
    return 0.0


def _snippet(text: str, limit: int = 160) -> str:
    """A one-line excerpt of a response body (HTML tags stripped)."""
    title = re.search(r"<title>(.*?)</title>", text, re.I | re.S)
    body = re.sub(r"<[^>]+>", " ", text)
    one = " ".join(((title.group(1) + ": ") if title else "").split() + body.split())
    return one[:limit] + ("..." if len(one) > limit else "")


def _connection_problem(exc: requests.ConnectionError) -> str:
    text = str(exc)
    for needle, problem in (
        ("refused", "connection refused (endpoint down?)"),
        ("resolve", "cannot resolve the host name (offline, or a wrong URL?)"),
        ("unreachable", "network unreachable (offline?)"),
        ("reset", "connection reset by the server"),
        ("aborted", "connection aborted by the server"),
    ):
        if needle in text.lower():
            return problem
    return f"connection failed: {text[-200:]}"


def _parse(endpoint: str, response: requests.Response) -> dict[str, Any]:
    if response.status_code != 200:
        problem = f"HTTP {response.status_code} {response.reason}"
        if response.text.strip():
            problem += f" ({_snippet(response.text)})"
        retry_after = response.headers.get("Retry-After", "")
        wait_s = float(retry_after) if retry_after.strip().isdigit() else None
        if wait_s is not None:
            problem += f", Retry-After {retry_after.strip()} s"
        raise OverpassError(
            endpoint, problem, retryable=response.status_code in RETRY_STATUS, retry_after_s=wait_s
        )
    text = response.text
    if text.lstrip()[:1] == "<":
        raise OverpassError(
            endpoint, f"answered HTML/XML, not Overpass JSON: {_snippet(text)}", retryable=True
        )
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise OverpassError(
            endpoint, f"truncated or malformed JSON ({len(response.content):,} bytes): {exc}", retryable=True
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("elements"), list):
        raise OverpassError(endpoint, "answer is JSON but has no `elements` list", retryable=True)
    remark = str(data.get("remark") or "")
    if "error" in remark.lower():
        # Overpass sends what it had so far plus a remark when a query times out or runs out of memory.
        raise OverpassError(
            endpoint, f"server-side error, answer incomplete: {remark.strip()}", retryable=True
        )
    return data


def post_query(
    endpoint: str,
    query: str,
    *,
    timeout_s: float,
    retry: Retry,
    rate_limit: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, OverpassError, float], None] | None = None,
) -> dict[str, Any]:
    """POST one query (`data=`) with bounded retries and exponential backoff; the parsed Overpass JSON."""
    url = interpreter_url(endpoint)
    last: OverpassError | None = None
    for attempt in range(1, max(retry.attempts, 1) + 1):
        if rate_limit:
            pause = slot_pause(endpoint, timeout_s=timeout_s)
            if pause:
                sleep(pause)
        try:
            response = requests.post(
                url, data={"data": query}, timeout=timeout_s, headers=ox_http._get_http_headers()
            )
            return _parse(url, response)
        except requests.Timeout:
            last = OverpassError(url, f"no answer within the timeout of {timeout_s:g} s", retryable=True)
        except requests.ConnectionError as exc:
            last = OverpassError(url, _connection_problem(exc), retryable=True)
        except requests.RequestException as exc:  # e.g. ChunkedEncodingError: body cut short
            last = OverpassError(url, f"transfer failed: {exc}", retryable=True)
        except OverpassError as exc:
            last = exc
        if not last.retryable or attempt >= retry.attempts:
            break
        wait = min(max(retry.backoff_s * 2 ** (attempt - 1), last.retry_after_s or 0.0), retry.max_wait_s)
        if on_retry is not None:
            on_retry(attempt, last, wait)
        sleep(wait)
    assert last is not None
    raise OverpassError(
        last.endpoint, f"{last.problem} (gave up after {attempt} attempt(s))", retryable=False
    ) from last


@dataclass
class Download:
    """Everything fetched for a region, merged and de-duplicated by (type, id)."""

    nodes: dict[int, dict[str, Any]] = field(default_factory=dict)
    ways: dict[int, dict[str, Any]] = field(default_factory=dict)
    relations: dict[int, dict[str, Any]] = field(default_factory=dict)
    road_way_ids: set[int] = field(default_factory=set)
    fuel_keys: set[tuple[str, int]] = field(default_factory=set)
    restriction_ids: set[int] = field(default_factory=set)
    duplicates: int = 0
    osm_base: str | None = None  # the data's timestamp as the endpoint reports it
    requests: int = 0

    def add(self, kind: str, answer: dict[str, Any], endpoint: str) -> None:
        stamp = (answer.get("osm3s") or {}).get("timestamp_osm_base")
        if stamp and (self.osm_base is None or str(stamp) < self.osm_base):
            self.osm_base = str(stamp)
        self.requests += 1
        for el in answer["elements"]:
            try:
                etype, eid = el["type"], int(el["id"])
                if etype == "node":
                    float(el["lat"]), float(el["lon"])
                elif etype == "way":
                    [int(n) for n in el["nodes"]]
                elif etype == "relation":
                    [(m["type"], int(m["ref"])) for m in el["members"]]
                else:
                    raise KeyError("type")
            except (KeyError, TypeError, ValueError) as exc:
                raise OverpassError(
                    endpoint, f"malformed element in a {kind} answer: {str(el)[:160]}"
                ) from exc
            table = {"node": self.nodes, "way": self.ways, "relation": self.relations}[etype]
            if eid in table:
                self.duplicates += 1
            else:
                table[eid] = el
            tags = el.get("tags") or {}
            if kind == "roads" and etype == "way":
                self.road_way_ids.add(eid)
            if kind == "fuel" and tags.get("amenity") == "fuel":
                self.fuel_keys.add((etype, eid))
            if kind == "restrictions" and etype == "relation":
                self.restriction_ids.add(eid)

    def missing_way_nodes(self) -> int:
        return sum(1 for w in self.ways.values() for n in w["nodes"] if int(n) not in self.nodes)

    def missing_relation_members(self) -> int:
        tables = {"node": self.nodes, "way": self.ways, "relation": self.relations}
        return sum(
            1 for r in self.relations.values() for m in r["members"] if int(m["ref"]) not in tables[m["type"]]
        )


def fetch(
    polygon: BaseGeometry,
    *,
    endpoint: str,
    timeout_s: float,
    retry: Retry,
    progress: bool,
    rate_limit: bool = True,
    log: Callable[[str], None] = print,
) -> Download:
    """Run every query (osmnx's pieces) against the endpoint; fail on the first piece that fails."""
    queries = build_queries(polygon)
    n_pieces = max(q.piece for q in queries)
    log(
        f"fetch: {n_pieces} polygon piece(s), {len(queries)} Overpass request(s) to {interpreter_url(endpoint)}"
    )
    out = Download()
    bar = tqdm(queries, desc="overpass", unit="req", disable=not progress)

    def on_retry(attempt: int, err: OverpassError, wait: float) -> None:
        bar.write(f"fetch: attempt {attempt}/{retry.attempts} failed: {err}; retrying in {wait:g} s")

    try:
        for q in bar:
            bar.set_postfix_str(f"piece {q.piece}/{n_pieces} {q.kind}")
            try:
                answer = post_query(
                    endpoint,
                    q.text,
                    timeout_s=timeout_s,
                    retry=retry,
                    rate_limit=rate_limit,
                    on_retry=on_retry,
                )
            except OverpassError as exc:
                raise OverpassError(
                    exc.endpoint, f"{q.kind} query for piece {q.piece}/{n_pieces} failed: {exc.problem}"
                ) from exc
            out.add(q.kind, answer, interpreter_url(endpoint))
    finally:
        bar.close()
    return out


def write_osm_xml(
    download: Download, out: TextIO, *, bounds: tuple[float, float, float, float], generator: str
) -> None:
    """OSM XML 0.6 with <bounds> (west, south, east, north); nodes, ways, relations each sorted by id."""
    west, south, east, north = bounds
    w = out.write
    w("<?xml version='1.0' encoding='UTF-8'?>\n")
    w(
        f'<osm version="0.6" generator={quoteattr(generator)} '
        'copyright="OpenStreetMap and contributors" attribution="http://www.openstreetmap.org/copyright" '
        'license="http://opendatacommons.org/licenses/odbl/1-0/">\n'
    )
    w(f' <bounds minlat="{south:.7f}" minlon="{west:.7f}" maxlat="{north:.7f}" maxlon="{east:.7f}"/>\n')

    def tags(el: dict[str, Any]) -> str:
        return "".join(
            f"  <tag k={quoteattr(str(k))} v={quoteattr(str(v))}/>\n"
            for k, v in (el.get("tags") or {}).items()
        )

    for nid in sorted(download.nodes):
        el = download.nodes[nid]
        head = f' <node id="{nid}" lat="{float(el["lat"]):.7f}" lon="{float(el["lon"]):.7f}"'
        body = tags(el)
        w(f"{head}>\n{body} </node>\n" if body else f"{head}/>\n")
    for wid in sorted(download.ways):
        el = download.ways[wid]
        nds = "".join(f'  <nd ref="{int(n)}"/>\n' for n in el["nodes"])
        w(f' <way id="{wid}">\n{nds}{tags(el)} </way>\n')
    for rid in sorted(download.relations):
        el = download.relations[rid]
        members = "".join(
            f'  <member type={quoteattr(m["type"])} ref="{int(m["ref"])}" role={quoteattr(str(m.get("role", "")))}/>\n'
            for m in el["members"]
        )
        w(f' <relation id="{rid}">\n{members}{tags(el)} </relation>\n')
    w("</osm>\n")
