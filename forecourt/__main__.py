"""`python -m forecourt COMMAND`: the station link server, simulated sites and their control.

  link      the link server (TCP lines and WebSocket /ws/text), its own process; several may run
  simulate  one simulated site connecting to a link server with its site key
  sites     simulated sites for every station with nozzles in the database (development: creates their
            site keys), all in one process with one control interface
  ctl       drive a simulated site through its control interface (lift, fuel, hang up, cashier, ...)

`python -m forecourt COMMAND --help` describes one and touches nothing. Exit status: 0 ok, 1 failure,
2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

DEFAULT_PRICES_FEN = {"89": 720, "92": 765, "95": 818, "98": 918, "0": 740}
DEFAULT_CONTROL_PORT = 7102


def _pumps_arg(value: str) -> int:
    n = int(value)
    if not 1 <= n <= 99:
        raise argparse.ArgumentTypeError("1 to 99 pumps")
    return n


def _grades_arg(value: str) -> list[str]:
    from geo._pricing import KNOWN_GRADES

    grades = [g.strip() for g in value.split(",") if g.strip()]
    bad = [g for g in grades if g not in KNOWN_GRADES]
    if bad or not grades or len(grades) > 9:
        raise argparse.ArgumentTypeError(f"1 to 9 grades among {', '.join(KNOWN_GRADES)}")
    return grades


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m forecourt", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    link = sub.add_parser("link", help="run a link server", description="Run a station link server.")
    link.add_argument("--host", help="listen address (FUEL_LINK_HOST, default 127.0.0.1)")
    link.add_argument(
        "--port", type=int, help="TCP port of plain OpenFSC lines (FUEL_LINK_PORT, 7100; 0: any)"
    )
    link.add_argument("--ws-port", type=int, help="WebSocket port, path /ws/text (FUEL_LINK_WS_PORT, 7101)")
    link.add_argument("--no-ws", action="store_true", help="no WebSocket listener")
    link.add_argument("--link-id", help="this server's name in forecourt_links (default host:pid)")

    sim = sub.add_parser("simulate", help="run one simulated site", description="Run one simulated site.")
    sim.add_argument("--station", type=int, required=True, help="the station id the site key belongs to")
    sim.add_argument("--pumps", type=_pumps_arg, default=4, help="pumps 1..N (default 4)")
    sim.add_argument(
        "--grades", type=_grades_arg, default=["92", "95", "0"], help="nozzle grades per pump, e.g. 92,95,0"
    )
    sim.add_argument("--link", required=True, help="HOST:PORT (TCP) or ws://HOST:PORT/ws/text")
    sim.add_argument("--key", required=True, help="SiteAccessKey (from `ingest keys create --role site`)")
    sim.add_argument("--secret", required=True, help="the site key's secret")
    _sim_options(sim)

    sites = sub.add_parser(
        "sites",
        help="simulated sites for the stations with nozzles (development)",
        description="Simulated sites for every station with nozzles in DATABASE_URL (FUEL_ENV development or "
        "test only: it creates a fresh site key per station and revokes the previous simulator keys).",
    )
    sites.add_argument("--link", help="HOST:PORT or ws://... (default the settings' link address)")
    sites.add_argument("--max-sites", type=int, default=50, help="at most this many stations (default 50)")
    sites.add_argument("--stations", help="only these station ids, comma-separated")
    _sim_options(sites)

    ctl = sub.add_parser("ctl", help="drive a simulated site", description="Drive a simulated site.")
    ctl.add_argument("--control", default=f"http://127.0.0.1:{DEFAULT_CONTROL_PORT}", help="control URL")
    ctl.add_argument("station", type=int)
    ctl.add_argument(
        "action",
        choices=(
            "show",
            "lift",
            "preset",
            "fuel",
            "hangup",
            "cashier",
            "suspend",
            "resume",
            "open",
            "close",
            "drop",
            "offline",
            "online",
        ),
    )
    ctl.add_argument("pump", type=int, nargs="?", help="pump number (pump actions)")
    ctl.add_argument("--nozzle", type=int, default=1)
    ctl.add_argument("--litres", help="fuel/preset volume in litres")
    ctl.add_argument("--amount", help="preset amount in CNY")
    ctl.add_argument("--site-tx-id", help="cashier: the sale (default the oldest payable)")
    ctl.add_argument("--wait", action="store_true", help="fuel: return when dispensed")
    return p


def _sim_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--control-port", type=int, default=DEFAULT_CONTROL_PORT, help="loopback HTTP control port (0: none)"
    )
    p.add_argument("--flow", type=float, default=30.0, help="nozzle flow in litres per minute (default 30)")
    p.add_argument(
        "--progress-interval", type=float, default=1.0, help="seconds between PROGRESS lines (default 1)"
    )
    p.add_argument(
        "--unpaid-cap", type=int, default=2, help="unpaid sales a pump holds before it refuses (2)"
    )
    p.add_argument("--tick", type=float, default=0.1, help="simulation step in seconds (default 0.1)")
    p.add_argument("--reconnect", type=float, default=1.0, help="seconds before reconnecting (default 1)")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        if args.command == "link":
            return _link(args)
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "sites":
            return _sites(args)
        return _ctl(args)
    except KeyboardInterrupt:
        return 130


def _link(args: argparse.Namespace) -> int:
    from config import get_settings
    from forecourt._link import LinkServer, serve_forever

    settings = get_settings()
    server = LinkServer.from_settings(settings, link_id=args.link_id)
    host = args.host or settings.link_host
    port = settings.link_port if args.port is None else args.port
    ws_port = None if args.no_ws else settings.link_ws_port if args.ws_port is None else args.ws_port

    def ready(ports: dict[str, int]) -> None:
        print(f"link: listening {' '.join(f'{k}={host}:{v}' for k, v in ports.items())}", flush=True)

    asyncio.run(serve_forever(server, host, port, ws_port, ready=ready))
    return 0


def _site_model(pumps: dict[int, dict[int, tuple[str, int]]], args: argparse.Namespace) -> Any:
    from forecourt._site import Site

    return Site(
        pumps,
        tx_prefix=_tx_prefix(),
        unpaid_cap=args.unpaid_cap,
        flow_ml_per_s=max(1, int(args.flow * 1000 / 60)),
        progress_interval_s=args.progress_interval,
        totaliser_start_ml=int(time.time() * 10),  # grows across restarts: totalisers stay monotonic
    )


def _tx_prefix() -> str:
    """Site transaction ids unique across restarts: the start time in base 36."""
    n, digits = int(time.time() * 10), "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out


async def _run_sites(sims: list[Any], control_port: int) -> None:
    tasks = [asyncio.create_task(s.run()) for s in sims]
    server = None
    if control_port:
        import uvicorn

        from forecourt._control import control_app

        config = uvicorn.Config(
            control_app({s.station_id: s for s in sims}),
            host="127.0.0.1",
            port=control_port,
            log_level="warning",
            lifespan="off",
        )
        server = uvicorn.Server(config)
        tasks.append(asyncio.create_task(server.serve()))
    print(
        f"simulate: {len(sims)} site(s) {', '.join(str(s.station_id) for s in sims)}"
        + (f"; control http://127.0.0.1:{control_port}" if control_port else ""),
        flush=True,
    )
    await asyncio.gather(*tasks)


def _simulate(args: argparse.Namespace) -> int:
    from forecourt._simulator import SimulatedSite

    pumps = {
        p: {n: (g, DEFAULT_PRICES_FEN[g]) for n, g in enumerate(args.grades, start=1)}
        for p in range(1, args.pumps + 1)
    }
    sim = SimulatedSite(
        args.station,
        _site_model(pumps, args),
        link=args.link,
        key=args.key,
        secret=args.secret,
        reconnect_s=args.reconnect,
        tick_s=args.tick,
    )
    asyncio.run(_run_sites([sim], args.control_port))
    return 0


def _sites(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    import psycopg

    from config import get_settings
    from forecourt._simulator import SimulatedSite
    from ingest._keys import cli_actor
    from store._audit import record_many
    from store._auth import create_site_key
    from store._prices import current_prices

    settings = get_settings()
    if settings.env not in ("development", "test"):
        print("forecourt sites: creates site keys; only with FUEL_ENV development or test", file=sys.stderr)
        return 1
    wanted = None if not args.stations else {int(s) for s in args.stations.split(",") if s.strip()}
    sims = []
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute(
            "SELECT station_id, pump_no, nozzle_no, grade FROM nozzles WHERE active ORDER BY 1, 2, 3"
        ).fetchall()
        layout: dict[int, dict[int, dict[int, str]]] = {}
        for station, pump, nozzle, grade in rows:
            if wanted is None or station in wanted:
                layout.setdefault(station, {}).setdefault(pump, {})[nozzle] = grade
        stations = sorted(layout)[: args.max_sites]
        if not stations:
            print("forecourt sites: no station has nozzles (onboard pumps first)", file=sys.stderr)
            return 1
        prices = current_prices(conn, stations, datetime.now(UTC))
        with conn.transaction():
            revoked = conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE role = 'site' AND name LIKE 'simulator-%%'"
                " AND revoked_at IS NULL AND station_ids && %s::bigint[] RETURNING name",
                (stations,),
            ).fetchall()
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            keys = {
                s: create_site_key(conn, f"simulator-{s}-{stamp}", s, secret_key=settings.secret_key)
                for s in stations
            }
            record_many(
                conn,
                actor=cli_actor(),
                entries=[
                    *(
                        ("update", "api_key", name, {"revoked": False}, {"revoked": True})
                        for (name,) in revoked
                    ),
                    *(
                        ("create", "api_key", k.name, None, {"role": "site", "station_ids": [k.station_id]})
                        for k in keys.values()
                    ),
                ],
            )
    link = args.link or f"{settings.link_host}:{settings.link_port}"
    for station in stations:
        station_prices = prices.get(station, {})
        pumps = {
            p: {
                n: (
                    g,
                    int(station_prices[g].price_cny * 100) if g in station_prices else DEFAULT_PRICES_FEN[g],
                )
                for n, g in nozzles.items()
            }
            for p, nozzles in layout[station].items()
        }
        key = keys[station]
        sims.append(
            SimulatedSite(
                station,
                _site_model(pumps, args),
                link=link,
                key=key.site_access_key,
                secret=key.secret,
                reconnect_s=args.reconnect,
                tick_s=args.tick,
            )
        )
    asyncio.run(_run_sites(sims, args.control_port))
    return 0


def _ctl(args: argparse.Namespace) -> int:
    base = f"{args.control.rstrip('/')}/sites/{args.station}"
    pump_actions = {"lift", "preset", "fuel", "hangup", "cashier", "suspend", "resume", "open", "close"}
    query: dict[str, str] = {}
    if args.action == "show":
        method, url = "GET", base
    elif args.action in ("drop", "offline", "online"):
        method, url = "POST", f"{base}/link/{args.action}"
    else:
        if args.pump is None:
            print(f"forecourt ctl: {args.action} needs a pump number", file=sys.stderr)
            return 2
        assert args.action in pump_actions
        method, url = "POST", f"{base}/pumps/{args.pump}/{args.action}"
        if args.action == "lift":
            query["nozzle"] = str(args.nozzle)
        if args.action in ("fuel", "preset") and args.litres:
            query["litres"] = args.litres
        if args.action == "preset" and args.amount:
            query["amount"] = args.amount
        if args.action == "fuel":
            if not args.litres:
                print("forecourt ctl: fuel needs --litres", file=sys.stderr)
                return 2
            if args.wait:
                query["wait"] = "true"
        if args.action == "cashier" and args.site_tx_id:
            query["site_tx_id"] = args.site_tx_id
    if query:
        url += "?" + urllib.parse.urlencode(query)
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=150) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        print(f"forecourt ctl: {exc.code} {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"forecourt ctl: {args.control} does not answer: {exc.reason}", file=sys.stderr)
        return 1
    print(json.dumps(body, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
