"""Bounded HTTP load from a separate process: `python -m benchmarks._loadgen SPEC.json OUT.json`.

SPEC: {"base": url, "clients": int, "seconds": float, "seed": int, "mix": {kind: weight},
"requests": {kind: [path, ...]}, "writes": {"mode": "traffic" | "prices", ...}}. Each client is an
asyncio task with its own seeded RNG that loops until the deadline: pick a kind by weight, send it,
record (latency, status). OUT: per kind the latencies (s), status counts and errors (non-2xx or
exceptions, with up to 5 examples). Loopback only.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx


async def _write(
    client: httpx.AsyncClient, spec: dict[str, Any], rng: random.Random, idx: int
) -> httpx.Response:
    w = spec["writes"]
    ids = w.get("station_ids", [])
    mine = ids[idx :: spec["clients"]]
    if w["mode"] == "prices" and mine:  # each client owns its stations: no two writers race on a version
        sid = mine[rng.randrange(len(mine))]
        key = {"X-API-Key": w["api_key"]}
        got = await client.get(f"/v1/manage/stations/{sid}", headers=key)
        if got.status_code != 200:
            return got
        price = f"{rng.uniform(w['price_lo'], w['price_hi']):.2f}"
        return await client.put(
            f"/v1/stations/{sid}/prices",
            json={"prices": [{"grade": w.get("grade", "92"), "price_cny": price}]},
            headers=key | {"If-Match": got.headers.get("etag", "")},
        )
    now = datetime.now(UTC)
    updates = [
        {
            "edge_id": rng.randrange(w["n_edges"]),
            "factor": round(rng.uniform(0.6, 1.0), 3),
            "observed_at": now.isoformat(),
            "expires_at": (now + timedelta(seconds=300)).isoformat(),
        }
        for _ in range(w.get("batch", 5))
    ]
    return await client.post("/v1/traffic", json={"updates": updates}, headers={"X-API-Key": w["api_key"]})


async def _client(
    idx: int, spec: dict[str, Any], deadline: float, out: dict[str, Any], http: httpx.AsyncClient
) -> None:
    rng = random.Random(spec["seed"] * 1000 + idx)
    kinds = list(spec["mix"])
    weights = [spec["mix"][k] for k in kinds]
    while time.perf_counter() < deadline:
        kind = rng.choices(kinds, weights)[0]
        t0 = time.perf_counter()
        status = 0
        try:
            if kind == "write":
                resp = await _write(http, spec, rng, idx)
            else:
                resp = await http.get(rng.choice(spec["requests"][kind]))
            status = resp.status_code
            body = resp.text[:200] if status >= 300 else ""
        except Exception as exc:  # any failure is an error to report, not a crash
            body = f"{type(exc).__name__}: {exc}"[:200]
        dt = time.perf_counter() - t0
        rec = out.setdefault(kind, {"lat": [], "status": {}, "errors": 0, "examples": []})
        rec["lat"].append(dt)
        rec["status"][str(status)] = rec["status"].get(str(status), 0) + 1
        if not 200 <= status < 300:
            rec["errors"] += 1
            if len(rec["examples"]) < 5:
                rec["examples"].append(f"{status} {body}")


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    limits = httpx.Limits(max_connections=spec["clients"], max_keepalive_connections=spec["clients"])
    async with httpx.AsyncClient(base_url=spec["base"], timeout=30.0, limits=limits) as http:
        t0 = time.perf_counter()
        deadline = t0 + float(spec["seconds"])
        await asyncio.gather(*(_client(i, spec, deadline, out, http) for i in range(spec["clients"])))
        out["_elapsed_s"] = time.perf_counter() - t0
    return out


def main(argv: list[str]) -> int:
    with open(argv[0], encoding="utf-8") as fh:
        spec = json.load(fh)
    result = asyncio.run(run(spec))
    with open(argv[1], "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
