"""`python -m ingest keys create|list|revoke`: API keys for operators, station managers and traffic feeds,
and site keys for the station link.

A key is shown once, at creation; only its HMAC is stored (store/_auth.py). A `site` key belongs to one
station (`--station ID`): its forecourt controller authenticates on the station link with OpenFSC
`PLAINAUTH <SiteAccessKey> <Secret>`; `create` prints both, on one line. Names are unique, since a
key's name is the actor of every audit row it writes. Creation and revocation are audited with the actor
`cli:<login>`. `--help` on any subcommand prints help and touches nothing.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg

from config import get_settings
from ingest._cli import Commands, add_command, described
from store._audit import record
from store._auth import ROLES, create_api_key, create_site_key, list_api_keys, revoke_api_key

TZ = ZoneInfo("Asia/Shanghai")  # naive expiry times are read as local time in Lijiang


def cli_actor() -> str:
    """The audit actor of a command run by hand: `cli:<login>`."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return f"cli:{who}"


def _stations(value: str) -> list[int]:
    try:
        ids = [int(s) for s in value.replace(" ", "").split(",") if s]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"station ids are whole numbers separated by commas, got {value!r}"
        ) from None
    if not ids or min(ids) < 1:
        raise argparse.ArgumentTypeError("give at least one station id, each 1 or more")
    return ids


def _expiry(value: str) -> datetime:
    tz = TZ
    try:
        if value.endswith("d") and value[:-1].isdigit():
            return datetime.now(tz) + timedelta(days=int(value[:-1]))
        at = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expiry is an ISO-8601 date or time, or Nd (days), got {value!r}"
        ) from None
    at = at if at.tzinfo else at.replace(tzinfo=tz)
    if at <= datetime.now(tz):
        raise argparse.ArgumentTypeError(f"expiry {at.isoformat()} is in the past")
    return at


def add_parser(commands: Commands) -> None:
    p = add_command(
        commands,
        "keys",
        run,
        summary="create, list and revoke API keys (operators, station managers, traffic feeds, sites)",
        description=described(__doc__),
    )
    sub = p.add_subparsers(dest="action", required=True, metavar="{create,list,revoke}")
    actions = {
        "create": "create a key and print it once",
        "list": "list keys (names, roles, stations, expiry; never the keys)",
        "revoke": "revoke a key by name (kept for the audit trail)",
    }
    c, _, r = (sub.add_parser(name, help=text, description=text) for name, text in actions.items())
    c.add_argument("--name", required=True, help="unique name: the actor in the audit log")
    c.add_argument("--role", required=True, choices=ROLES, help="operator, manager, traffic or site")
    c.add_argument("--stations", type=_stations, default=[], help="manager keys: station ids, e.g. 12,15")
    c.add_argument("--station", type=int, help="site keys: the station whose forecourt controller it is")
    c.add_argument("--expires", type=_expiry, help="ISO-8601 date/time (Asia/Shanghai if naive) or Nd")
    r.add_argument("name")


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    with psycopg.connect(settings.database_url) as conn:
        if args.action == "list":
            rows = list_api_keys(conn)
            now = datetime.now(TZ)
            for k in rows:
                state = (
                    "revoked"
                    if k["revoked_at"]
                    else "expired"
                    if k["expires_at"] and k["expires_at"] <= now
                    else "active"
                )
                stations = ",".join(str(s) for s in k["station_ids"]) or "-"
                expires = k["expires_at"].isoformat() if k["expires_at"] else "never"
                print(f"{k['name']}\t{k['role']}\t{stations}\t{state}\texpires {expires}")
            if not rows:
                print("no keys")
            return 0
        actor = cli_actor()
        if args.action == "create" and args.role == "site":
            return _create_site_key(conn, args, actor, settings.secret_key)
        if args.action == "create":
            if args.station is not None:
                print("keys create: --station is for site keys (managers take --stations)", file=sys.stderr)
                return 2
            try:
                with conn.transaction():
                    key = create_api_key(
                        conn,
                        args.name,
                        args.role,
                        args.stations,
                        secret_key=settings.secret_key,
                        expires_at=args.expires,
                    )
                    record(
                        conn,
                        actor=actor,
                        action="create",
                        entity="api_key",
                        entity_id=args.name.strip(),
                        old=None,
                        new={"role": args.role, "station_ids": args.stations, "expires_at": args.expires},
                    )
            except ValueError as exc:
                print(f"keys create: {exc}", file=sys.stderr)
                return 2
            print(key)
            print(f"key {args.name.strip()!r} ({args.role}): shown once, store it now", file=sys.stderr)
            return 0
        with conn.transaction():
            n = revoke_api_key(conn, args.name)
            if n:
                record(
                    conn,
                    actor=actor,
                    action="update",
                    entity="api_key",
                    entity_id=args.name,
                    old={"revoked": False},
                    new={"revoked": True},
                )
        if not n:
            print(f"keys revoke: no active key named {args.name!r}", file=sys.stderr)
            return 1
        print(f"revoked {args.name!r}")
        return 0


def _create_site_key(conn: psycopg.Connection, args: argparse.Namespace, actor: str, secret_key: str) -> int:
    if args.station is None or args.station < 1 or args.stations:
        print("keys create: a site key needs --station ID (one station, no --stations)", file=sys.stderr)
        return 2
    try:
        with conn.transaction():
            key = create_site_key(
                conn, args.name, args.station, secret_key=secret_key, expires_at=args.expires
            )
            record(
                conn,
                actor=actor,
                action="create",
                entity="api_key",
                entity_id=key.name,
                old=None,
                new={
                    "role": "site",
                    "station_ids": [key.station_id],
                    "site_access_key": key.site_access_key,
                    "expires_at": args.expires,
                },
            )
    except ValueError as exc:
        print(f"keys create: {exc}", file=sys.stderr)
        return 2
    print(f"{key.site_access_key} {key.secret}")
    print(
        f"site key {key.name!r} for station {key.station_id}: PLAINAUTH <SiteAccessKey> <Secret> as above;"
        " shown once, store it now",
        file=sys.stderr,
    )
    return 0
