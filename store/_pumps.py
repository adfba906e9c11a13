"""A station's forecourt: pumps (fuelling points), their nozzles, and the live status the station link
reports (pump_status, written by forecourt/). Writes come from `python -m ingest pumps` and the demo
seeding, through `upsert_forecourt`: validated before (geo/_plausible.py nozzle_problem), audited."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from geo._plausible import nozzle_problem
from store._audit import record_many
from store._prices import station_grades


@dataclass(frozen=True)
class NozzleIn:
    """One nozzle row of an onboarding file: pump label applies to the pump."""

    station_id: int
    pump_no: int
    nozzle_no: int
    grade: str
    active: bool = True
    pump_label: str = ""


@dataclass
class ForecourtCounts:
    pumps_new: int = 0
    pumps_updated: int = 0
    nozzles_new: int = 0
    nozzles_updated: int = 0
    unchanged: int = 0


def _dicts(cur: psycopg.Cursor[Any]) -> list[dict[str, Any]]:
    names = [d.name for d in cur.description or ()]
    return [r if isinstance(r, dict) else dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def upsert_forecourt(
    conn: psycopg.Connection, rows: Sequence[NozzleIn], *, actor: str, apply: bool = True
) -> tuple[ForecourtCounts, list[str]]:
    """Create or update pumps and nozzles (nothing else is touched). Returns the counts and example lines.
    With apply=False only counts (a dry run). Run inside the caller's transaction: one audit row per change."""
    counts = ForecourtCounts()
    examples: list[str] = []
    stations = sorted({r.station_id for r in rows})
    sells = station_grades(conn, stations)
    for r in rows:
        problem = nozzle_problem(
            r.pump_no, r.nozzle_no, r.grade, label=r.pump_label, sells=sells.get(r.station_id)
        )
        if problem is not None:
            raise problem.error()
    pumps = {
        (d["station_id"], d["pump_no"]): d
        for d in _dicts(
            conn.execute(
                "SELECT station_id, pump_no, label FROM pumps WHERE station_id = ANY(%s)", (stations,)
            )
        )
    }
    nozzles = {
        (d["station_id"], d["pump_no"], d["nozzle_no"]): d
        for d in _dicts(
            conn.execute(
                "SELECT station_id, pump_no, nozzle_no, grade, active FROM nozzles WHERE station_id = ANY(%s)",
                (stations,),
            )
        )
    }
    audit: list[tuple[str, str, int | str, dict[str, Any] | None, dict[str, Any] | None]] = []
    labels: dict[tuple[int, int], str] = {}
    for r in rows:
        labels.setdefault((r.station_id, r.pump_no), r.pump_label)
    for (sid, pno), label in labels.items():
        old = pumps.get((sid, pno))
        if old is None:
            counts.pumps_new += 1
            audit.append(("create", "pump", f"{sid}:{pno}", None, {"label": label}))
            if apply:
                conn.execute(
                    "INSERT INTO pumps (station_id, pump_no, label) VALUES (%s, %s, %s)", (sid, pno, label)
                )
            examples.append(f"new pump {sid}:{pno} {label!r}".rstrip())
        elif old["label"] != label:
            counts.pumps_updated += 1
            audit.append(("update", "pump", f"{sid}:{pno}", {"label": old["label"]}, {"label": label}))
            if apply:
                conn.execute(
                    "UPDATE pumps SET label = %s, updated_at = now() WHERE station_id = %s AND pump_no = %s",
                    (label, sid, pno),
                )
            examples.append(f"pump {sid}:{pno} label {old['label']!r} -> {label!r}")
    for r in rows:
        key = (r.station_id, r.pump_no, r.nozzle_no)
        new = {"grade": r.grade, "active": r.active}
        old = nozzles.get(key)
        eid = f"{r.station_id}:{r.pump_no}:{r.nozzle_no}"
        if old is None:
            counts.nozzles_new += 1
            audit.append(("create", "nozzle", eid, None, new))
            if apply:
                conn.execute(
                    "INSERT INTO nozzles (station_id, pump_no, nozzle_no, grade, active) VALUES (%s, %s, %s, %s, %s)",
                    (*key, r.grade, r.active),
                )
            examples.append(f"new nozzle {eid} {r.grade}#" + ("" if r.active else " (inactive)"))
        elif (old["grade"], old["active"]) != (r.grade, r.active):
            counts.nozzles_updated += 1
            audit.append(("update", "nozzle", eid, {"grade": old["grade"], "active": old["active"]}, new))
            if apply:
                conn.execute(
                    "UPDATE nozzles SET grade = %s, active = %s, updated_at = now()"
                    " WHERE station_id = %s AND pump_no = %s AND nozzle_no = %s",
                    (r.grade, r.active, *key),
                )
            examples.append(
                f"nozzle {eid} {old['grade']}# -> {r.grade}#, active {old['active']} -> {r.active}"
            )
        else:
            counts.unchanged += 1
    if apply:
        record_many(conn, actor=actor, entries=audit)
    return counts, examples


def forecourt_of(conn: psycopg.Connection, station_ids: Iterable[int]) -> dict[int, int]:
    """{station id: number of pumps} of the stations that have pumps."""
    ids = sorted({int(i) for i in station_ids})
    return {
        int(d["station_id"]): int(d["n"])
        for d in _dicts(
            conn.execute(
                "SELECT station_id, count(*) AS n FROM pumps WHERE station_id = ANY(%s) GROUP BY station_id",
                (ids,),
            )
        )
    }


def station_pumps(
    conn: psycopg.Connection, station_id: int, *, now: datetime, max_age: timedelta
) -> list[dict[str, Any]]:
    """The station's pumps in order, each with its nozzles and its live status: the status the link last
    reported, or "unknown" when there is none, it is past its valid_until, or it is older than max_age."""
    cur = conn.execute(
        "SELECT p.pump_no, p.label, s.status, s.fp_state, s.reported_at, s.valid_until, s.received_at,"
        " coalesce((SELECT json_agg(json_build_object('nozzle_no', n.nozzle_no, 'grade', n.grade,"
        "   'active', n.active) ORDER BY n.nozzle_no) FROM nozzles n"
        "   WHERE n.station_id = p.station_id AND n.pump_no = p.pump_no), '[]') AS nozzles"
        " FROM pumps p LEFT JOIN pump_status s USING (station_id, pump_no)"
        " WHERE p.station_id = %s ORDER BY p.pump_no",
        (station_id,),
    )
    out = []
    for d in _dicts(cur):
        fresh = d["status"] is not None and (
            d["valid_until"] > now if d["valid_until"] is not None else d["received_at"] > now - max_age
        )
        out.append(
            {
                "pump_no": int(d["pump_no"]),
                "label": d["label"],
                "status": d["status"] if fresh else "unknown",
                "fp_state": d["fp_state"] if fresh else None,
                "reported_at": d["reported_at"],
                "valid_until": d["valid_until"],
                "nozzles": d["nozzles"],
            }
        )
    return out
