"""A fake Overpass API on 127.0.0.1 that answers from a real OSM extract, for the fetch-region tests.

It understands the query shapes `ingest._overpass` sends (osmnx's): statements
``node|way|relation[filters](poly:'lat lon ...')``, the recursion ``>`` (way -> nodes, relation ->
members and their nodes) and ``rel(bw)[type=restriction]``. Tag filters ``["k"]``, ``["k"="v"]``,
``["k"!="v"]``, ``["k"~"re"]`` and ``["k"!~"re"]`` are evaluated like Overpass (unanchored regex). An
element is inside the polygon when one of its nodes is. `mode` switches to the failures a real
endpoint shows: refusing, hanging, truncated JSON, an HTML error page, HTTP 500/429, a runtime remark.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import osmium
import shapely
from shapely.geometry import Polygon

_STATEMENT = re.compile(r"\b(node|way|relation)((?:\[[^\]]*\])+)\(poly:(['\"])([^'\"]*)\3\)")
_FILTER = re.compile(r"""\[\s*(['"])(.*?)\1\s*(?:(!=|!~|=|~)\s*(['"])(.*?)\4)?\s*\]""")


@dataclass
class OsmData:
    nodes: dict[int, tuple[float, float, dict[str, str]]] = field(default_factory=dict)  # lat, lon, tags
    ways: dict[int, tuple[list[int], dict[str, str]]] = field(default_factory=dict)
    relations: dict[int, tuple[list[tuple[str, int, str]], dict[str, str]]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> OsmData:
        data = cls()
        types = {"n": "node", "w": "way", "r": "relation"}
        for obj in osmium.FileProcessor(str(path)):
            tags = {t.k: t.v for t in obj.tags}
            if isinstance(obj, osmium.osm.Node):
                data.nodes[obj.id] = (obj.location.lat, obj.location.lon, tags)
            elif isinstance(obj, osmium.osm.Way):
                data.ways[obj.id] = ([n.ref for n in obj.nodes], tags)
            elif isinstance(obj, osmium.osm.Relation):
                data.relations[obj.id] = ([(types[m.type], m.ref, m.role) for m in obj.members], tags)
        return data


def tag_filters(text: str) -> list[tuple[str, str | None, str | None]]:
    return [(m.group(2), m.group(3), m.group(5)) for m in _FILTER.finditer(text)]


def matches(tags: dict[str, str], filters: list[tuple[str, str | None, str | None]]) -> bool:
    for key, op, value in filters:
        have = tags.get(key)
        if op is None:
            ok = have is not None
        elif op == "=":
            ok = have == value
        elif op == "!=":
            ok = have != value
        elif op == "~":
            ok = have is not None and re.search(value or "", have) is not None
        else:  # "!~"
            ok = have is None or re.search(value or "", have) is None
        if not ok:
            return False
    return True


def parse_poly(text: str) -> Polygon:
    vals = [float(v) for v in text.split()]
    return Polygon(list(zip(vals[1::2], vals[0::2], strict=True)))  # "lat lon" pairs -> (lon, lat)


class FakeOverpass:
    """Serve `data` over HTTP like /api/interpreter (POST or GET `data=`) and /api/status."""

    def __init__(self, data: OsmData) -> None:
        self.data = data
        self.mode = "ok"  # ok | 500 | 429 | timeout | truncated | cut | html | remark | fail-after
        self.fail_after = 0  # with mode "fail-after": answer this many requests, then 500 for good
        self.flaky = 0  # answer the next N interpreter requests with 503 first, then follow `mode`
        self.sleep_s = 2.0
        self.queries: list[str] = []
        self._lock = threading.Lock()
        ids = np.fromiter(data.nodes, dtype=np.int64, count=len(data.nodes))
        self._node_ids = ids
        self._lon = np.array([data.nodes[i][1] for i in ids])
        self._lat = np.array([data.nodes[i][0] for i in ids])
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/api/interpreter"

    def __enter__(self) -> FakeOverpass:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    # -- query evaluation ---------------------------------------------------------------------------
    def answer(self, query: str) -> dict[str, Any]:
        nodes: set[int] = set()
        ways: set[int] = set()
        rels: set[int] = set()
        restrictions = "rel(bw)" in query
        for m in _STATEMENT.finditer(query):
            kind, filters, poly = m.group(1), tag_filters(m.group(2)), parse_poly(m.group(4))
            inside = set(self._node_ids[shapely.contains_xy(poly, self._lon, self._lat)].tolist())
            if kind == "node":
                nodes |= {i for i in inside if matches(self.data.nodes[i][2], filters)}
            elif kind == "way":
                ways |= {
                    i
                    for i, (nds, tags) in self.data.ways.items()
                    if matches(tags, filters) and inside & set(nds)
                }
            else:
                rels |= {
                    i
                    for i, (ms, tags) in self.data.relations.items()
                    if matches(tags, filters) and self._touches(ms, inside)
                }
        if restrictions:
            found = {
                i
                for i, (ms, tags) in self.data.relations.items()
                if tags.get("type") == "restriction" and any(t == "way" and r in ways for t, r, _ in ms)
            }
            return self._json(set(), set(), found)
        if ">" in query:  # recurse down: relation members, then way nodes
            for r in list(rels):
                for t, ref, _ in self.data.relations[r][0]:
                    if t == "node" and ref in self.data.nodes:
                        nodes.add(ref)
                    elif t == "way" and ref in self.data.ways:
                        ways.add(ref)
            for w in ways:
                nodes |= {n for n in self.data.ways[w][0] if n in self.data.nodes}
        return self._json(nodes, ways, rels)

    def _touches(self, members: list[tuple[str, int, str]], inside: set[int]) -> bool:
        for t, ref, _ in members:
            if t == "node" and ref in inside:
                return True
            if t == "way" and ref in self.data.ways and inside & set(self.data.ways[ref][0]):
                return True
        return False

    def _json(self, nodes: set[int], ways: set[int], rels: set[int]) -> dict[str, Any]:
        els: list[dict[str, Any]] = []
        for i in sorted(nodes):
            lat, lon, tags = self.data.nodes[i]
            els.append({"type": "node", "id": i, "lat": lat, "lon": lon, **({"tags": tags} if tags else {})})
        for i in sorted(ways):
            nds, tags = self.data.ways[i]
            els.append({"type": "way", "id": i, "nodes": nds, **({"tags": tags} if tags else {})})
        for i in sorted(rels):
            ms, tags = self.data.relations[i]
            members = [{"type": t, "ref": r, "role": role} for t, r, role in ms]
            els.append({"type": "relation", "id": i, "members": members, **({"tags": tags} if tags else {})})
        return {
            "version": 0.6,
            "generator": "fake Overpass (tests/overpass_fake.py)",
            "osm3s": {
                "timestamp_osm_base": "2019-06-01T00:00:00Z",
                "copyright": "OpenStreetMap contributors",
            },
            "elements": els,
        }

    # -- HTTP ------------------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, ctype: str, length: int | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                if url.path.endswith("/status"):
                    text = (
                        "Connected as: 1\nCurrent time: 2026-11-24T00:00:00Z\nAnnounced endpoint: none\n"
                        "Rate limit: 2\n2 slots available now.\nCurrently running queries (pid, space limit, "
                        "time limit, start time):\n"
                    )
                    self._send(200, text.encode(), "text/plain")
                    return
                self._interpreter(urllib.parse.parse_qs(url.query).get("data", [""])[0])

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(n).decode())
                self._interpreter(form.get("data", [""])[0])

            def _interpreter(self, query: str) -> None:
                with fake._lock:
                    fake.queries.append(query)
                    count = len(fake.queries)
                    flaky = fake.flaky > 0
                    fake.flaky -= 1 if flaky else 0
                mode = fake.mode
                if flaky:
                    self._send(503, b"<html><title>503 Service Unavailable</title></html>", "text/html")
                    return
                if mode == "fail-after" and count > fake.fail_after:
                    mode = "500"
                if not re.match(r"\[out:json\]\[timeout:[1-9][0-9]*\]", query):  # Overpass: 400 parse error
                    self._send(400, b"<html><body>Error: line 1: parse error</body></html>", "text/html")
                elif mode == "500":
                    self._send(500, b"<html><title>500 Internal Server Error</title></html>", "text/html")
                elif mode == "429":
                    self._send(429, b"<html><title>429 Too Many Requests</title></html>", "text/html")
                elif mode == "html":
                    page = (
                        b"<?xml version='1.0'?><html><head><title>OSM3S Response</title></head><body>"
                        b"<p><strong>Error</strong>: runtime error: open64: 0 Success</p></body></html>"
                    )
                    self._send(200, page, "text/html; charset=utf-8")
                else:
                    if mode == "timeout":
                        time.sleep(fake.sleep_s)
                    answer = fake.answer(query)
                    if mode == "remark":
                        answer["remark"] = (
                            'runtime error: Query timed out in "query" at line 1 after 180 seconds.'
                        )
                    body = json.dumps(answer).encode()
                    if mode == "truncated":  # a well-framed HTTP answer whose JSON stops halfway
                        body = body[: len(body) // 2]
                    if mode == "cut":  # the connection drops before Content-Length bytes arrived
                        self._send(200, body[: len(body) // 2], "application/json", length=len(body))
                        return
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        self._send(200, body, "application/json")  # the client may have given up

        return Handler
