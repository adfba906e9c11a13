"""Station-link test parts: a seeded station with pumps, site keys, a real link server process, a real
simulator process, and a raw OpenFSC client for protocol-level tests."""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence

import httpx
import psycopg

from config import PROJECT_ROOT
from store._auth import create_site_key
from tests._servers import TEST_ADMIN_KEY, TEST_SECRET_KEY, free_port, reap_at_exit


def seed_station(
    url: str, *, pumps: int = 2, grades: Sequence[str] = ("92", "95", "0"), name: str | None = None
) -> int:
    """A station with `pumps` pumps, each with one nozzle per grade (nozzle 1 = grades[0] ...)."""
    ref = name or f"fc-{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "INSERT INTO stations (source, source_ref, name, brand, geom, h3_r7, h3_r8, h3_r9, grades)"
            " VALUES ('demo', %s, %s, 'sinopec', ST_SetSRID(ST_MakePoint(100.23, 26.87), 4326), 0, 0, 0, %s)"
            " RETURNING id",
            (ref, ref, list(grades)),
        ).fetchone()
        assert row is not None
        station = int(row[0])
        for p in range(1, pumps + 1):
            conn.execute(
                "INSERT INTO pumps (station_id, pump_no, label) VALUES (%s, %s, %s)", (station, p, f"P{p}")
            )
            for n, g in enumerate(grades, start=1):
                conn.execute(
                    "INSERT INTO nozzles (station_id, pump_no, nozzle_no, grade) VALUES (%s, %s, %s, %s)",
                    (station, p, n, g),
                )
    return station


def site_key(url: str, station: int) -> tuple[str, str]:
    with psycopg.connect(url) as conn:
        key = create_site_key(
            conn, f"site-{station}-{uuid.uuid4().hex[:6]}", station, secret_key=TEST_SECRET_KEY
        )
    return key.site_access_key, key.secret


def _env(db_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=db_url,
        FUEL_ENV="test",
        FUEL_SECRET_KEY=TEST_SECRET_KEY,
        FUEL_ADMIN_API_KEY=TEST_ADMIN_KEY,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class _Process:
    proc: subprocess.Popen[bytes]
    log: object

    def _start(
        self, args: list[str], env: dict[str, str], ready: re.Pattern[bytes], timeout: float = 30
    ) -> re.Match[bytes]:
        self.log = tempfile.NamedTemporaryFile(prefix="forecourt-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = reap_at_exit(
            subprocess.Popen(
                [sys.executable, "-m", "forecourt", *args],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=self.log,  # type: ignore[arg-type]
            )
        )
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"forecourt {args[0]} exited: {self.stderr()}")
            select.select([self.proc.stdout], [], [], 0.2)
            chunk = self.proc.stdout.read() or b""
            buf += chunk
            m = ready.search(buf)
            if m:
                return m
        raise RuntimeError(f"forecourt {args[0]} not ready: {buf!r} {self.stderr()}")

    def stderr(self) -> str:
        with open(self.log.name, encoding="utf-8", errors="replace") as f:  # type: ignore[attr-defined]
            return f.read()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()  # type: ignore[attr-defined]
        os.unlink(self.log.name)  # type: ignore[attr-defined]


class LinkProcess(_Process):
    """`python -m forecourt link` on free ports."""

    def __init__(
        self, db_url: str, *, heartbeat_s: float = 2.0, port: int = 0, ws_port: int = 0, **env_extra: str
    ) -> None:
        settings = {
            "FUEL_LINK_HEARTBEAT_S": str(heartbeat_s),
            "FUEL_LINK_HEARTBEAT_TIMEOUT_S": "3",
            "FUEL_LINK_AUTH_TIMEOUT_S": "10",
            **env_extra,
        }
        env = _env(db_url, **settings)
        m = self._start(
            ["link", "--port", str(port), "--ws-port", str(ws_port)],
            env,
            re.compile(rb"listening tcp=([\d.]+):(\d+) ws=[\d.]+:(\d+)"),
        )
        self.host = m.group(1).decode()
        self.port = int(m.group(2))
        self.ws_port = int(m.group(3))
        self.address = f"{self.host}:{self.port}"
        self.ws_url = f"ws://{self.host}:{self.ws_port}/ws/text"


class SimProcess(_Process):
    """`python -m forecourt simulate` with its control interface on a free loopback port."""

    def __init__(
        self,
        db_url: str,
        station: int,
        link: str,
        key: str,
        secret: str,
        *,
        pumps: int = 2,
        grades: Sequence[str] = ("92", "95", "0"),
        flow_l_min: float = 600.0,
        progress_interval: float = 0.2,
        extra: Sequence[str] = (),
    ) -> None:
        self.control_port = free_port()
        self._start(
            [
                "simulate",
                "--station",
                str(station),
                "--pumps",
                str(pumps),
                "--grades",
                ",".join(grades),
                "--link",
                link,
                f"--key={key}",
                f"--secret={secret}",  # one word: a secret may begin with "-"
                "--control-port",
                str(self.control_port),
                "--flow",
                str(flow_l_min),
                "--progress-interval",
                str(progress_interval),
                "--reconnect",
                "0.3",
                "--tick",
                "0.05",
                *extra,
            ],
            _env(db_url),
            re.compile(rb"simulate: .*control"),
        )
        self.station = station
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.control_port}/sites/{station}", timeout=60)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.http.get("")
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def post(self, path: str, **params: object) -> dict:
        r = self.http.post(path, params=params)
        assert r.status_code == 200, r.text
        return r.json()

    def state(self) -> dict:
        """The site as the control interface shows it (pumps, nozzles' totalisers, buffers)."""
        r = self.http.get(f"http://127.0.0.1:{self.control_port}/sites/{self.station}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait_online(self, online: bool = True, timeout: float = 15) -> dict:
        r = self.http.get("/link/wait", params={"online": str(online).lower(), "timeout": timeout})
        assert r.status_code == 200, r.text + self.stderr()[-3000:]
        return r.json()

    def close(self) -> None:
        self.http.close()
        super().close()


class RawSite:
    """A hand-driven OpenFSC client over TCP: send lines, read lines."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buf = b""

    def send(self, line: str | bytes) -> None:
        data = line if isinstance(line, bytes) else line.encode("utf-8")
        self.sock.sendall(data if data.endswith(b"\r\n") else data + b"\r\n")

    def read(self, timeout: float = 5.0) -> str | None:
        """The next line (without CRLF), or None at EOF or timeout."""
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except (TimeoutError, OSError):
                return None
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def expect(self, pattern: str, timeout: float = 5.0) -> str:
        """Read lines until one matches `pattern` (answering HEARTBEATs on the way); fail otherwise."""
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            line = self.read(deadline - time.monotonic())
            if line is None:
                break
            seen.append(line)
            if re.search(pattern, line):
                return line
            m = re.match(r"(\S+) (HEARTBEAT|PRICES|PUMPS|TRANSACTIONS|RECONCILE)\b", line)
            if m:
                if m.group(2) == "HEARTBEAT":
                    self.send(f"{m.group(1)} BEAT 2026-01-01T00:00:00Z")
                self.send(f"{m.group(1)} OK")
        raise AssertionError(f"no line matching {pattern!r}; got {seen}")

    def handshake(
        self, key: str, secret: str, capability: str = "CLEAR HEARTBEAT PRICES PUMPS TRANSACTIONS QUIT"
    ) -> None:
        assert (self.read() or "").startswith("* CAPABILITY ")
        self.send(f"* CAPABILITY {capability}")
        self.send(f"C1 PLAINAUTH {key} {secret}")
        self.expect(r"^C1 OK$")

    def close(self) -> None:
        self.sock.close()
