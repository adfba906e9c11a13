"""Fuelling-session test parts (and `wait_for`, re-exported): a real link server, a real simulated site, a real API process, users with
session tokens and the station's nozzle tokens, and a live WebSocket client."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
from websockets.sync.client import ClientConnection, connect

from api import _tokens
from store._nozzles import issue_tokens
from store._users import User, login
from tests._forecourt import LinkProcess, SimProcess, seed_station, site_key
from tests._payments import ApiProcess, service_env, wait_for
from tests._servers import TEST_SECRET_KEY, free_port, fresh_rate_prefix

__all__ = ["Stack", "read_messages", "wait_for"]


class Stack:
    """link server + one simulated site (its station seeded with `pumps` pumps) + the API."""

    def __init__(
        self,
        url: str,
        *,
        pumps: int = 2,
        api_env: dict[str, str] | None = None,
        flow_l_min: float = 600.0,
        fixed_link_ports: bool = False,
    ) -> None:
        self.url = url
        # fixed ports: the link server can be killed and started again where the site reconnects
        self.link_ports = (free_port(), free_port()) if fixed_link_ports else (0, 0)
        self.link = LinkProcess(url, port=self.link_ports[0], ws_port=self.link_ports[1])
        self.station = seed_station(url, pumps=pumps)
        self.key, self.secret = site_key(url, self.station)
        self.sim = SimProcess(
            url, self.station, self.link.address, self.key, self.secret, pumps=pumps, flow_l_min=flow_l_min
        )
        self.sim.wait_online()
        wait_for(lambda: self.sql("SELECT 1 FROM forecourt_links WHERE station_id = %s", self.station))
        env = service_env(
            url,
            {
                "FUEL_RATE_LIMIT_PREFIX": fresh_rate_prefix(),
                "FUEL_FUELLING_SWEEP_S": "0.5",
                **(api_env or {}),
            },
        )
        self.api = ApiProcess(env)
        self.http = httpx.Client(base_url=self.api.base, timeout=30)
        with psycopg.connect(url) as conn:
            issued = issue_tokens(conn, self.station, actor="test", secret_key=TEST_SECRET_KEY)
        self.tokens = {(t.pump_no, t.nozzle_no): t.token for t in issued}

    def restart_link(self) -> None:
        """Kill the link server (no goodbye, like a crash) and start a new one on the same ports."""
        assert self.link_ports != (0, 0), "a Stack made with fixed_link_ports=True"
        self.link.kill()
        self.link.close()
        self.link = LinkProcess(self.url, port=self.link_ports[0], ws_port=self.link_ports[1])

    def sql(self, query: str, *args: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as conn:
            cur = conn.execute(query.encode(), args)
            return cur.fetchall() if cur.description else []

    def user(self, name: str | None = None) -> dict[str, str]:
        """The Authorization header of a new user."""
        with psycopg.connect(self.url) as conn:
            row, _ = login(conn, openid=name or f"o-{uuid.uuid4().hex[:12]}", unionid=None)
        token, _ = _tokens.issue(User(row.id, row.openid), secret_key=TEST_SECRET_KEY, ttl_s=3600)
        return {"Authorization": f"Bearer {token}"}

    def bind(self, auth: dict[str, str], pump: int = 1, nozzle: int = 1, **body: Any) -> httpx.Response:
        return self.http.post(
            "/v1/fuelling/sessions", json={"nozzle_token": self.tokens[(pump, nozzle)], **body}, headers=auth
        )

    def session(self, auth: dict[str, str], session_id: int) -> dict[str, Any]:
        r = self.http.get(f"/v1/fuelling/sessions/{session_id}", headers=auth)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait_state(self, auth: dict[str, str], session_id: int, *states: str, timeout: float = 15) -> dict:
        return dict(
            wait_for(
                lambda: (s := self.session(auth, session_id))["state"] in states and s,
                timeout_s=timeout,
                what=f"session {session_id} in {states}",
            )
        )

    def live(self, session_id: int, auth: dict[str, str] | None = None, **query: object) -> ClientConnection:
        """A live WebSocket (token in the query unless `auth` is None and `token` is not given)."""
        params = dict(query)
        if auth is not None:
            params["token"] = auth["Authorization"].removeprefix("Bearer ")
        qs = "&".join(f"{k}={v}" for k, v in params.items())
        url = f"ws://127.0.0.1:{self.api.port}/v1/fuelling/sessions/{session_id}/live" + (
            f"?{qs}" if qs else ""
        )
        return connect(url, open_timeout=10, close_timeout=5)

    def close(self) -> None:
        self.http.close()
        self.api.close()
        self.sim.close()
        self.link.close()


def read_messages(
    ws: ClientConnection, *, until: Callable[[dict[str, Any]], bool], timeout: float = 20
) -> list[dict]:
    """Messages until one satisfies `until` (included)."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no message ending the wait in {timeout} s; got {out[-5:]}")
        msg = json.loads(ws.recv(timeout=remaining))
        out.append(msg)
        if until(msg):
            return out
