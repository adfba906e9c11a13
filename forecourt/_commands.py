"""Commands from the service to a site: `send_command(db, station_id, verb, args, timeout_s=...)`.

The command is a row of forecourt_commands plus a NOTIFY on `forecourt_cmd`, committed together; the
link server that holds the station's connection sends it as an OpenFSC request and stores the site's
answer (NOTIFY `forecourt_reply`). A station whose link no server holds (or whose link missed its
heartbeats) is offline: `StationOffline` at once, nothing is stored. A command that was sent but not
answered in time raises `CommandTimeout`: the site may have acted on it, so a payment flow retries it
(CLEAR answers 410 when the first one was applied).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from forecourt import _openfsc as o
from geo._errors import FuelError, InvalidInput
from store import _forecourt as channels  # a module reference: store._forecourt imports this package

# Requests the server sends to a site (OpenFSC core and the service's extensions).
VERBS = (
    "LOCKTX",
    "UNLOCKTX",
    "CLEAR",
    "UNLOCKPUMP",
    "LOCKPUMP",
    "TRANSACTIONS",
    "PUMPSTATUS",
    "PUMPS",
    "PRICES",
    "RECONCILE",
)


class StationOffline(FuelError, ConnectionError):
    """No link server holds a live connection of the station."""

    def __init__(self, station_id: int, detail: str = "no live link") -> None:
        super().__init__(f"station {station_id} is offline: {detail}")
        self.station_id = station_id


class CommandTimeout(FuelError, TimeoutError):
    """The command was sent to the site and not answered in time: its outcome is unknown."""

    def __init__(self, command_id: int, timeout_s: float) -> None:
        super().__init__(f"command {command_id} sent, no answer within {timeout_s:g} s: outcome unknown")
        self.command_id = command_id


@dataclass(frozen=True)
class CommandReply:
    """The site's answer: `ok`, else `code` (OpenFSC error code) and `text`; `lines` are the
    notifications it sent before concluding (e.g. TRANSACTION or SALE lines)."""

    id: int
    ok: bool
    code: int | None
    text: str
    lines: list[str] = field(default_factory=list)

    def bodies(self) -> list[o.Body]:
        return [o.parse_line(line).body for line in self.lines]


def _url(db: Any) -> str:
    if isinstance(db, str):
        return db
    url = getattr(db, "url", None)
    if isinstance(url, str):
        return url
    raise TypeError("send_command needs a database URL or a store.Database")


def command_line(verb: str, args: list[str] | tuple[str, ...]) -> str:
    """The request (without tag), checked by the codec; `InvalidInput` when it is not a valid request."""
    if verb not in VERBS:
        raise InvalidInput("verb", f"{verb!r} is not a command to a site ({', '.join(VERBS)})")
    text = " ".join([verb, *[str(a) for a in args]])
    try:
        o.parse_line("S0 " + text)
    except o.ProtocolError as exc:
        raise InvalidInput("args", exc.message) from None
    return text


def send_command(
    db: Any,
    station_id: int,
    verb: str,
    args: list[str] | tuple[str, ...] = (),
    *,
    timeout_s: float = 10.0,
    requested_by: str = "service",
    link_alive_s: float = 60.0,
) -> CommandReply:
    """Send one request to the station's site and wait for its answer (see module docstring).
    `link_alive_s`: a link whose last heartbeat is older counts as offline."""
    text = command_line(verb, args)
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(_url(db), autocommit=True) as conn:
        conn.execute(f"LISTEN {channels.REPLY_CHANNEL}")
        with conn.transaction():
            live = conn.execute(
                "SELECT 1 FROM forecourt_links WHERE station_id = %s"
                " AND last_seen_at > now() - make_interval(secs => %s)",
                (station_id, link_alive_s),
            ).fetchone()
            if live is None:
                raise StationOffline(station_id)
            row = conn.execute(
                "INSERT INTO forecourt_commands (station_id, line, requested_by, deadline)"
                " VALUES (%s, %s, %s, now() + make_interval(secs => %s)) RETURNING id",
                (station_id, text, requested_by[:100], timeout_s),
            ).fetchone()
            assert row is not None
            command_id = int(row[0])
            conn.execute(
                "SELECT pg_notify(%s, %s)",
                (channels.CMD_CHANNEL, json.dumps({"id": command_id, "station_id": station_id})),
            )
        while True:
            state = conn.execute(
                "SELECT state, reply_ok, reply_code, reply_text, reply_lines FROM forecourt_commands WHERE id = %s",
                (command_id,),
            ).fetchone()
            assert state is not None
            if state[0] in ("done", "expired"):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for note in conn.notifies(timeout=remaining):
                if json.loads(note.payload).get("id") == command_id:
                    break
        if state[0] == "done":
            return CommandReply(command_id, bool(state[1]), state[2], state[3] or "", list(state[4] or ()))
        taken = conn.execute(
            "UPDATE forecourt_commands SET state = 'expired' WHERE id = %s AND state = 'pending' RETURNING id",
            (command_id,),
        ).fetchone()
        if taken is not None:
            raise StationOffline(station_id, "no link server took the command in time")
        raise CommandTimeout(command_id, timeout_s)
