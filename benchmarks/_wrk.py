"""HTTP load with wrk (a C load generator, Debian package `wrk`; `make bench` installs it when missing).

wrk runs as a second process with its own threads, so what is measured is the service, not the client:
the old asyncio + httpx load generator saturated before the server did. One Lua script,
benchmarks/wrk/load.lua: GET requests cycling through a file of paths, or the mixed load (nearby
70 % / route 20 % / price writes 10 % with a manager key) from a file of tagged lines. It counts
non-2xx answers and prints one `WRKJSON` line that `run_wrk` parses.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import tmp_dir
from config import PROJECT_ROOT

SCRIPTS = Path(__file__).resolve().parent / "wrk"
CONNECTIONS = 64
WRK_THREADS = 2


def wrk_path() -> str | None:
    return shutil.which("wrk")


def uvicorn_flags() -> list[str]:
    """The uvicorn flags of `make run` (the Makefile's UVICORN_FLAGS), so the bench serves as production does."""
    text = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("UVICORN_FLAGS :="):
            value = line.split(":=", 1)[1]
            while value.rstrip().endswith("\\"):
                i += 1
                value = value.rstrip()[:-1] + " " + lines[i]
            return shlex.split(value)
    raise RuntimeError("UVICORN_FLAGS not found in the Makefile")


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    socket_errors: int  # connect, read, write and timeout errors of wrk
    examples: str
    sent: dict[str, int]

    @property
    def errors(self) -> int:
        return self.non2xx + self.socket_errors

    def row(self) -> list[Any]:
        return [f"{self.rps:,.0f}", self.p50_ms, self.p90_ms, self.p99_ms, self.requests, self.errors]


def run_wrk(
    base: str,
    *,
    data: list[str],
    seconds: float,
    connections: int = CONNECTIONS,
    threads: int = WRK_THREADS,
    name: str = "wrk",
) -> WrkResult:
    """wrk against `base` with benchmarks/wrk/load.lua and its data file (one line per entry)."""
    exe = wrk_path()
    if exe is None:
        raise RuntimeError("wrk is not installed (make bench installs the Debian package `wrk`)")
    path = tmp_dir() / f"{name}.txt"
    path.write_text("\n".join(data) + "\n", encoding="utf-8")
    cmd = [exe, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
           "-s", str(SCRIPTS / "load.lua"), base, "--", str(path)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 120).stdout
    line = next((x for x in out.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {out[-2000:]}")
    d = json.loads(line.removeprefix("WRKJSON "))
    secs = d["duration_us"] / 1e6
    return WrkResult(
        requests=int(d["requests"]),
        seconds=secs,
        rps=d["requests"] / secs if secs > 0 else 0.0,
        p50_ms=d["p50_us"] / 1e3,
        p90_ms=d["p90_us"] / 1e3,
        p99_ms=d["p99_us"] / 1e3,
        max_ms=d["max_us"] / 1e3,
        non2xx=int(d["non2xx"]),
        socket_errors=int(d["connect"] + d["read"] + d["write"] + d["timeout"]),
        examples=str(d.get("examples", "")).strip(" |"),
        sent={k: int(v) for k, v in d.get("sent", {}).items()},
    )


def paths(
    base: str, items: list[str], *, seconds: float, name: str, connections: int = CONNECTIONS
) -> WrkResult:
    """GET `items` (paths) round robin for `seconds` at `connections`."""
    return run_wrk(base, data=items, seconds=seconds, connections=connections, name=name)
