"""A station's devices (receipt printer, speaker) and what paid sales send to them (device_deliveries).

Settings are written through set_devices only (plausibility checked by the caller's devices.check_printer,
audited here in the writer's transaction). A delivery row is created in the payment's own transaction (the
on_paid hook) or by a reprint request (audited), and its queue job marks it done once delivered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row, tuple_row

from geo import Conflict, NotFound
from store._audit import record

Kind = Literal["receipt", "voice"]
MAX_COPIES = 99  # the original and 98 reprints at most
MAX_ERROR = 500


@dataclass(frozen=True, slots=True)
class StationDevices:
    station_id: int
    printer_host: str | None
    printer_port: int | None
    speaker_device_id: str | None
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    out_trade_no: str
    kind: str
    copy_no: int
    station_id: int
    requested_by: str
    state: str
    attempts: int
    last_error: str | None
    target: str | None
    requested_at: datetime
    done_at: datetime | None


_DELIVERY = (
    "id, out_trade_no, kind, copy_no, station_id, requested_by, state, attempts, last_error, target,"
    " requested_at, done_at"
)


def _q(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]) -> psycopg.Cursor[tuple[Any, ...]]:
    """A query answered in tuples, whatever the connection's row factory (the API pool's is dict_row)."""
    cur = conn.cursor(row_factory=tuple_row)
    cur.execute(query, params)
    return cur


def get_devices(conn: psycopg.Connection[Any], station_id: int) -> StationDevices:
    """The station's devices (all None when none are set); NotFound for an unknown station."""
    row = _q(
        conn,
        "SELECT s.id, d.printer_host, d.printer_port, d.speaker_device_id, d.updated_at FROM stations s"
        " LEFT JOIN station_devices d ON d.station_id = s.id WHERE s.id = %s",
        (station_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"station {station_id} does not exist")
    return StationDevices(*row)


def set_devices(
    conn: psycopg.Connection[Any],
    station_id: int,
    *,
    printer_host: str | None,
    printer_port: int | None,
    speaker_device_id: str | None,
    actor: str,
) -> StationDevices:
    """Replace the station's device settings (None: no such device); one audit row when anything changed."""
    with conn.transaction():
        if _q(conn, "SELECT 1 FROM stations WHERE id = %s FOR SHARE", (station_id,)).fetchone() is None:
            raise NotFound(f"station {station_id} does not exist")
        old = _q(
            conn,
            "SELECT printer_host, printer_port, speaker_device_id FROM station_devices WHERE station_id = %s"
            " FOR UPDATE",
            (station_id,),
        ).fetchone()
        new = (printer_host, printer_port, speaker_device_id)
        if old is not None and tuple(old) == new:
            return get_devices(conn, station_id)
        _q(
            conn,
            "INSERT INTO station_devices (station_id, printer_host, printer_port, speaker_device_id)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (station_id) DO UPDATE SET printer_host = EXCLUDED.printer_host,"
            " printer_port = EXCLUDED.printer_port, speaker_device_id = EXCLUDED.speaker_device_id,"
            " updated_at = now()",
            (station_id, *new),
        )
        names = ("printer_host", "printer_port", "speaker_device_id")
        record(
            conn,
            actor=actor,
            action="create" if old is None else "update",
            entity="station_devices",
            entity_id=station_id,
            old=None if old is None else dict(zip(names, old, strict=True)),
            new=dict(zip(names, new, strict=True)),
        )
        return get_devices(conn, station_id)


def paid_payment_of_sale(conn: psycopg.Connection[Any], sale_id: int) -> tuple[str, int] | None:
    """(out_trade_no, station id) of the sale's paid payment, or None."""
    row = _q(
        conn,
        "SELECT p.out_trade_no, s.station_id FROM sale_payments sp JOIN payments p USING (out_trade_no)"
        " JOIN fcc_sales s ON s.id = sp.sale_id WHERE sp.sale_id = %s AND p.state = 'paid'"
        " ORDER BY p.paid_at DESC LIMIT 1",
        (sale_id,),
    ).fetchone()
    return None if row is None else (str(row[0]), int(row[1]))


def add_delivery(
    conn: psycopg.Connection[Any], out_trade_no: str, kind: Kind, station_id: int, *, requested_by: str
) -> int | None:
    """The first delivery of its kind for a payment (copy 0); None when it exists already (a repeated
    hook changes nothing)."""
    row = _q(
        conn,
        "INSERT INTO device_deliveries (out_trade_no, kind, copy_no, station_id, requested_by)"
        " VALUES (%s, %s, 0, %s, %s) ON CONFLICT (out_trade_no, kind, copy_no) DO NOTHING RETURNING id",
        (out_trade_no, kind, station_id, requested_by),
    ).fetchone()
    return None if row is None else int(row[0])


def add_reprint(conn: psycopg.Connection[Any], out_trade_no: str, station_id: int, *, actor: str) -> Delivery:
    """A new receipt copy of a paid payment of the station (next copy number), audited. NotFound when the
    station has no such paid payment; Conflict past MAX_COPIES."""
    with conn.transaction():
        paid = _q(
            conn,
            "SELECT 1 FROM payments p JOIN sale_payments sp USING (out_trade_no) JOIN fcc_sales s"
            " ON s.id = sp.sale_id WHERE p.out_trade_no = %s AND s.station_id = %s AND p.state = 'paid'"
            " FOR UPDATE OF p",
            (out_trade_no, station_id),
        ).fetchone()
        if paid is None:
            raise NotFound(f"station {station_id} has no paid payment {out_trade_no[:64]!r}")
        (last,) = _q(
            conn,
            "SELECT coalesce(max(copy_no), -1) FROM device_deliveries WHERE out_trade_no = %s AND kind = 'receipt'",
            (out_trade_no,),
        ).fetchone() or (-1,)
        copy_no = int(last) + 1
        if copy_no > MAX_COPIES:
            raise Conflict(f"payment {out_trade_no} has been printed {MAX_COPIES + 1} times already")
        row = _q(
            conn,
            "INSERT INTO device_deliveries (out_trade_no, kind, copy_no, station_id, requested_by)"
            f" VALUES (%s, 'receipt', %s, %s, %s) RETURNING {_DELIVERY}",
            (out_trade_no, copy_no, station_id, actor[:64]),
        ).fetchone()
        assert row is not None
        d = Delivery(*row)
        record(
            conn,
            actor=actor,
            action="create",
            entity="receipt_reprint",
            entity_id=d.id,
            old=None,
            new={"out_trade_no": out_trade_no, "copy_no": copy_no, "station_id": station_id},
        )
        return d


def get_delivery(conn: psycopg.Connection[Any], delivery_id: int, *, lock: bool = False) -> Delivery | None:
    """A delivery; with lock=True, locked for the caller's transaction, or None while another holds it."""
    suffix = " FOR UPDATE SKIP LOCKED" if lock else ""
    row = _q(
        conn, f"SELECT {_DELIVERY} FROM device_deliveries WHERE id = %s{suffix}", (delivery_id,)
    ).fetchone()
    return None if row is None else Delivery(*row)


def deliveries_of(conn: psycopg.Connection[Any], out_trade_no: str) -> list[Delivery]:
    rows = _q(
        conn,
        f"SELECT {_DELIVERY} FROM device_deliveries WHERE out_trade_no = %s ORDER BY kind, copy_no",
        (out_trade_no,),
    ).fetchall()
    return [Delivery(*r) for r in rows]


def mark_done(conn: psycopg.Connection[Any], delivery_id: int, *, target: str) -> None:
    _q(
        conn,
        "UPDATE device_deliveries SET state = 'done', done_at = now(), attempts = attempts + 1,"
        " last_error = NULL, target = %s WHERE id = %s",
        (target[:300], delivery_id),
    )


def mark_failed(conn: psycopg.Connection[Any], delivery_id: int, *, target: str | None, error: str) -> None:
    _q(
        conn,
        "UPDATE device_deliveries SET attempts = attempts + 1, last_error = %s, target = %s"
        " WHERE id = %s AND state = 'pending'",
        (error[:MAX_ERROR], None if target is None else target[:300], delivery_id),
    )


def receipt_facts(conn: psycopg.Connection[Any], out_trade_no: str) -> dict[str, Any] | None:
    """What a receipt and an announcement show of a paid sale's payment."""
    cur = conn.cursor(row_factory=dict_row)
    cur.execute(
        "SELECT st.id AS station_id, st.name AS station_name, st.address AS station_address, s.pump_no,"
        " s.nozzle_no, s.grade, s.volume_ml, s.unit_price_fen, sp.sale_amount_fen, sp.discount_fen,"
        " p.paid_fen, p.out_trade_no, p.transaction_id, p.paid_at"
        " FROM payments p JOIN sale_payments sp USING (out_trade_no) JOIN fcc_sales s ON s.id = sp.sale_id"
        " JOIN stations st ON st.id = s.station_id WHERE p.out_trade_no = %s AND p.state = 'paid'",
        (out_trade_no,),
    )
    row = cur.fetchone()
    return None if row is None else dict(row)
