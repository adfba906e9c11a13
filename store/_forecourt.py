"""The station link's tables (migration 0015): raw events, pump status, progress, sales, links, commands.

Every change a site causes is written with its NOTIFY on channel `forecourt` in the same transaction:
payload `{"kind": "status"|"progress"|"sale"|"link", "station_id", "pump_no", "id"}` where `id` is the
row id (pump_progress.id, fcc_sales.id) or, for status and link changes, the forecourt_events id of the
line that caused it (null when the link server itself caused it: a dropped connection). Progress adds
`site_tx_id` and `seq`; link changes add `online`. (Progress payloads are built by PostgreSQL's
json_build_object: the same keys, other spacing.)
Commands: channel `forecourt_cmd` (`{"id", "station_id"}` for a new command, `{"kind": "replaced",
"station_id", "connection_id"}` when a newer connection took a station over), replies on
`forecourt_reply` (`{"id", "station_id"}`).
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from forecourt._sales import SaleFigures, merge
from store._auth import hash_key

CHANNEL = "forecourt"
CMD_CHANNEL = "forecourt_cmd"
REPLY_CHANNEL = "forecourt_reply"


def payload(kind: str, station_id: int, pump_no: int | None, row_id: int | None, **extra: Any) -> str:
    return json.dumps(
        {"kind": kind, "station_id": station_id, "pump_no": pump_no, "id": row_id, **extra},
        separators=(",", ":"),
    )


async def notify(conn: psycopg.AsyncConnection[Any], channel: str, message: str) -> None:
    await conn.execute("SELECT pg_notify(%s, %s)", (channel, message))


# --- raw events and site keys ------------------------------------------------------------------------
async def log_line(
    conn: psycopg.AsyncConnection[Any],
    *,
    connection_id: str,
    link_id: str,
    station_id: int | None,
    line: str,
) -> int:
    """Append one raw line a site sent; return its id. Call it before acting on the line."""
    cur = await conn.execute(
        "INSERT INTO forecourt_events (connection_id, link_id, station_id, line) VALUES (%s, %s, %s, %s)"
        " RETURNING id",
        (connection_id, link_id, station_id, line[:4100]),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def authenticate_site(
    conn: psycopg.AsyncConnection[Any], site_access_key: str, secret: str, *, secret_key: str
) -> tuple[int, str] | None:
    """(station id, key name) of a valid site key and secret, else None (unknown, revoked, expired, or
    a wrong secret: the same answer for each)."""
    cur = await conn.execute(
        "SELECT key_hash, station_ids[1], name FROM api_keys WHERE site_access_key = %s AND role = 'site'"
        " AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
        (site_access_key,),
    )
    row = await cur.fetchone()
    expected = row[0] if row else hash_key("no key", secret_key)
    ok = hmac.compare_digest(expected, hash_key(secret, secret_key))  # same work with or without a row
    if row is None or not ok:
        return None
    return int(row[1]), str(row[2])


# --- links -------------------------------------------------------------------------------------------
async def claim_link(
    conn: psycopg.AsyncConnection[Any],
    *,
    station_id: int,
    link_id: str,
    connection_id: str,
    transport: str,
    peer: str,
    event_id: int | None,
) -> str | None:
    """Make this connection the station's link (replacing an older one, whichever link server holds it);
    return the replaced connection's id. Commits with its NOTIFYs."""
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT connection_id FROM forecourt_links WHERE station_id = %s FOR UPDATE", (station_id,)
        )
        old = await cur.fetchone()
        await conn.execute(
            "INSERT INTO forecourt_links (station_id, link_id, connection_id, transport, peer)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (station_id) DO UPDATE SET link_id = EXCLUDED.link_id,"
            " connection_id = EXCLUDED.connection_id, transport = EXCLUDED.transport, peer = EXCLUDED.peer,"
            " connected_at = now(), last_seen_at = now()",
            (station_id, link_id, connection_id, transport, peer[:200]),
        )
        if old is not None:
            await notify(
                conn,
                CMD_CHANNEL,
                json.dumps({"kind": "replaced", "station_id": station_id, "connection_id": connection_id}),
            )
        await notify(conn, CHANNEL, payload("link", station_id, None, event_id, online=True))
    return str(old[0]) if old else None


async def touch_link(conn: psycopg.AsyncConnection[Any], station_id: int, connection_id: str) -> bool:
    """The link answered a heartbeat; False when another connection has taken the station over."""
    cur = await conn.execute(
        "UPDATE forecourt_links SET last_seen_at = now() WHERE station_id = %s AND connection_id = %s",
        (station_id, connection_id),
    )
    return cur.rowcount == 1


async def release_link(conn: psycopg.AsyncConnection[Any], station_id: int, connection_id: str) -> bool:
    """The connection ended: forget it (unless a newer one holds the station) and mark the station's
    pump statuses as no longer valid. Returns whether this connection still held the station."""
    async with conn.transaction():
        cur = await conn.execute(
            "DELETE FROM forecourt_links WHERE station_id = %s AND connection_id = %s",
            (station_id, connection_id),
        )
        held = cur.rowcount == 1
        if held:
            await conn.execute(
                "UPDATE pump_status SET valid_until = now() WHERE station_id = %s"
                " AND (valid_until IS NULL OR valid_until > now())",
                (station_id,),
            )
            await notify(conn, CHANNEL, payload("link", station_id, None, None, online=False))
    return held


# --- pump status, progress, sales --------------------------------------------------------------------
async def pump_exists(conn: psycopg.AsyncConnection[Any], station_id: int, pump_no: int) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM pumps WHERE station_id = %s AND pump_no = %s", (station_id, pump_no)
    )
    return await cur.fetchone() is not None


async def nozzle_grade(
    conn: psycopg.AsyncConnection[Any], station_id: int, pump_no: int, nozzle_no: int
) -> str | None:
    cur = await conn.execute(
        "SELECT grade FROM nozzles WHERE station_id = %s AND pump_no = %s AND nozzle_no = %s",
        (station_id, pump_no, nozzle_no),
    )
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def log_status(
    conn: psycopg.AsyncConnection[Any],
    *,
    connection_id: str,
    link_id: str,
    line: str,
    station_id: int,
    pump_no: int,
    status: str | None,
    fp_state: int | None,
    reported_at: datetime,
    valid_until: datetime,
) -> int:
    """One statement: the raw line logged, a PUMP (status) or FPSTATE (fp_state) report stored (the other
    field keeps its value; with no row yet an FPSTATE report stores the OpenFSC status its IFSF state
    implies), and the NOTIFY with the event id. Returns the event id."""
    from forecourt._site import openfsc_status

    cur = await conn.execute(
        "WITH ev AS (INSERT INTO forecourt_events (connection_id, link_id, station_id, line)"
        " VALUES (%(c)s, %(l)s, %(s)s, %(line)s) RETURNING id),"
        " up AS (INSERT INTO pump_status (station_id, pump_no, status, fp_state, reported_at, valid_until)"
        " VALUES (%(s)s, %(p)s, %(status)s, %(fp)s, %(at)s, %(until)s)"
        " ON CONFLICT (station_id, pump_no) DO UPDATE SET"
        " status = COALESCE(%(new_status)s, pump_status.status),"
        " fp_state = COALESCE(%(fp)s, pump_status.fp_state),"
        " reported_at = EXCLUDED.reported_at, valid_until = EXCLUDED.valid_until, received_at = now())"
        " SELECT ev.id, pg_notify('forecourt', json_build_object('kind', 'status', 'station_id', %(s)s::bigint,"
        " 'pump_no', %(p)s::integer, 'id', ev.id)::text) FROM ev",
        {
            "c": connection_id,
            "l": link_id,
            "line": line[:4100],
            "s": station_id,
            "p": pump_no,
            "status": status or openfsc_status(fp_state or 1),
            "new_status": status,
            "fp": fp_state,
            "at": reported_at,
            "until": valid_until,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def refresh_status_validity(
    conn: psycopg.AsyncConnection[Any], station_id: int, valid_until: datetime
) -> None:
    """The link is alive: the station's reported statuses stay valid until `valid_until`."""
    await conn.execute(
        "UPDATE pump_status SET valid_until = %s WHERE station_id = %s AND valid_until < %s",
        (valid_until, station_id, valid_until),
    )


@dataclass(frozen=True)
class ProgressIn:
    station_id: int
    pump_no: int
    nozzle_no: int
    site_tx_id: str | None
    seq: int
    volume_ml: int
    amount_fen: int


def _progress_sql(with_tx: bool) -> str:
    same_tx = "site_tx_id = %(tx)s" if with_tx else "site_tx_id IS NULL"
    return (
        "WITH ev AS (INSERT INTO forecourt_events (connection_id, link_id, station_id, line)"
        " VALUES (%(c)s, %(l)s, %(s)s, %(line)s) RETURNING id),"
        " last AS (SELECT seq, volume_ml, amount_fen FROM pump_progress"
        f" WHERE station_id = %(s)s AND pump_no = %(p)s AND {same_tx} ORDER BY seq DESC LIMIT 1),"
        " ins AS (INSERT INTO pump_progress (station_id, pump_no, nozzle_no, site_tx_id, seq, volume_ml, amount_fen)"
        " SELECT %(s)s, %(p)s, %(n)s, %(tx)s, %(seq)s, %(v)s, %(a)s WHERE NOT EXISTS (SELECT 1 FROM last"
        " WHERE last.seq >= %(seq)s OR last.volume_ml > %(v)s OR last.amount_fen > %(a)s) RETURNING id)"
        " SELECT ev.id, ins.id, last.seq, last.volume_ml, CASE WHEN ins.id IS NOT NULL THEN pg_notify('forecourt',"
        " json_build_object('kind', 'progress', 'station_id', %(s)s::bigint, 'pump_no', %(p)s::integer,"
        " 'id', ins.id, 'site_tx_id', %(tx)s::text, 'seq', %(seq)s::bigint)::text) END"
        " FROM ev LEFT JOIN ins ON true LEFT JOIN last ON true"
    )


_PROGRESS_SQL = {True: _progress_sql(True), False: _progress_sql(False)}


async def log_progress(
    conn: psycopg.AsyncConnection[Any], *, connection_id: str, link_id: str, line: str, p: ProgressIn
) -> tuple[int, int | None, str | None]:
    """One statement: the raw line logged, then the progress stored with its NOTIFY (payload with
    `site_tx_id` and `seq` besides the usual fields) unless it is refused: a sequence number not above
    the last one of the same fuelling, or a volume or amount below the last one. Returns (event id,
    progress row id or None, why it was refused or None)."""
    cur = await conn.execute(
        _PROGRESS_SQL[p.site_tx_id is not None],
        {
            "c": connection_id,
            "l": link_id,
            "line": line[:4100],
            "s": p.station_id,
            "p": p.pump_no,
            "n": p.nozzle_no,
            "tx": p.site_tx_id,
            "seq": p.seq,
            "v": p.volume_ml,
            "a": p.amount_fen,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    if row[1] is not None:
        return int(row[0]), int(row[1]), None
    if p.seq <= row[2]:
        return int(row[0]), None, f"out of order: seq {p.seq} after {row[2]}"
    return int(row[0]), None, f"volume or amount went backwards ({p.volume_ml} ml after {row[3]} ml)"


_SALE_COLUMNS = (
    "pump_no",
    "site_tx_id",
    "grade",
    "volume_ml",
    "amount_fen",
    "unit_price_fen",
    "state",
    "nozzle_no",
    "totaliser_start_ml",
    "totaliser_end_ml",
    "offline",
    "cleared_by",
    "ended_at",
)


async def upsert_sale(
    conn: psycopg.AsyncConnection[Any], station_id: int, sale: SaleFigures, *, create: bool = True
) -> tuple[int | None, str | None]:
    """Store a sale report (see forecourt._sales.merge); return (row id, review reason). With
    `create=False` an unknown sale is not stored (id None): a core TRANSACTION from a site that sends
    SALE lines only cross-checks."""
    async with conn.transaction():
        cur = await conn.execute(
            f"SELECT id, review_reason, {', '.join(_SALE_COLUMNS)} FROM fcc_sales"
            " WHERE station_id = %s AND site_tx_id = %s FOR UPDATE",
            (station_id, sale.site_tx_id),
        )
        row = await cur.fetchone()
        if row is None and not create:
            return None, None
        stored = None if row is None else SaleFigures(**dict(zip(_SALE_COLUMNS, row[2:], strict=True)))
        merged, reason = merge(stored, None if row is None else row[1], sale)
        values = {c: getattr(merged, c) for c in _SALE_COLUMNS}
        if row is None:
            cur = await conn.execute(
                f"INSERT INTO fcc_sales (station_id, review_reason, {', '.join(_SALE_COLUMNS)})"
                f" VALUES (%(station_id)s, %(review)s, {', '.join(f'%({c})s' for c in _SALE_COLUMNS)})"
                " RETURNING id",
                {"station_id": station_id, "review": reason, **values},
            )
            new = await cur.fetchone()
            assert new is not None
            sale_id = int(new[0])
        else:
            sale_id = int(row[0])
            if merged == stored and reason == row[1]:
                return sale_id, reason  # nothing new: no notification
            await conn.execute(
                f"UPDATE fcc_sales SET review_reason = %(review)s, updated_at = now(),"
                f" {', '.join(f'{c} = %({c})s' for c in _SALE_COLUMNS)} WHERE id = %(id)s",
                {"id": sale_id, "review": reason, **values},
            )
        await notify(conn, CHANNEL, payload("sale", station_id, sale.pump_no, sale_id))
        return sale_id, reason


async def latest_sale_end(conn: psycopg.AsyncConnection[Any], station_id: int) -> datetime | None:
    cur = await conn.execute("SELECT max(ended_at) FROM fcc_sales WHERE station_id = %s", (station_id,))
    row = await cur.fetchone()
    return None if row is None else row[0]


# --- commands ----------------------------------------------------------------------------------------
async def claim_command(
    conn: psycopg.AsyncConnection[Any], command_id: int, *, station_id: int, link_id: str, tag: str
) -> str | None:
    """Take a pending command of this station for sending; its request line (without tag) or None when
    it is not pending any more (another server took it, or it expired)."""
    cur = await conn.execute(
        "UPDATE forecourt_commands SET state = 'sent', link_id = %s, tag = %s, sent_at = now()"
        " WHERE id = %s AND station_id = %s AND state = 'pending' AND deadline > now() RETURNING line",
        (link_id, tag, command_id, station_id),
    )
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def pending_commands(conn: psycopg.AsyncConnection[Any], station_id: int) -> list[int]:
    cur = await conn.execute(
        "SELECT id FROM forecourt_commands WHERE station_id = %s AND state = 'pending' AND deadline > now()"
        " ORDER BY id",
        (station_id,),
    )
    return [int(r[0]) for r in await cur.fetchall()]


async def finish_command(
    conn: psycopg.AsyncConnection[Any],
    command_id: int,
    *,
    station_id: int,
    ok: bool | None,
    code: int | None,
    text: str,
    lines: list[str],
) -> None:
    """Store a command's answer (ok None: no answer before the deadline) and NOTIFY forecourt_reply."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE forecourt_commands SET state = %s, replied_at = now(), reply_ok = %s, reply_code = %s,"
            " reply_text = %s, reply_lines = %s WHERE id = %s",
            ("expired" if ok is None else "done", ok, code, text[:4096], lines[:1000], command_id),
        )
        await notify(conn, REPLY_CHANNEL, json.dumps({"id": command_id, "station_id": station_id}))


async def fsc_unlock_known(conn: psycopg.AsyncConnection[Any], station_id: int, fsc_tx_id: str) -> bool:
    """An UNLOCKPUMP with this FSCTransactionID was sent to the station (LOCKEDPUMP may cancel it)."""
    cur = await conn.execute(
        "SELECT 1 FROM forecourt_commands WHERE station_id = %s AND line LIKE %s AND state IN ('sent', 'done')",
        (station_id, f"UNLOCKPUMP % {fsc_tx_id} %"),
    )
    return await cur.fetchone() is not None
