"""Risk control's tables: rule overrides, deny/allow lists and the decisions with their review."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from config import PROJECT_ROOT
from geo import Conflict, NotFound
from risk._engine import RuleSet, parse_rules_file, validate_rule
from risk._model import Decision, Fired, Rule
from store._audit import jsonable, record


def tuple_cursor(conn: psycopg.Connection) -> psycopg.Cursor[Any]:
    """A cursor answering tuples whatever the connection's row factory (the service's pool uses dicts)."""
    return conn.cursor(row_factory=tuple_row)


RULES_FILE = PROJECT_ROOT / "data" / "risk" / "rules.json"
MAX_PAGE = 200


class DecisionNotFound(NotFound):
    """No risk decision with that id (404)."""


class RuleNotFound(NotFound):
    """No rule of that name in the rules file or the overrides (404)."""


class ListEntryNotFound(NotFound):
    """No deny/allow list entry with that id (404)."""


class PendingConflict(Conflict):
    """A held decision could be neither logged nor matched to the pending one it conflicts with (409)."""


class AlreadyReviewed(Conflict):
    """The decision is not awaiting review (approved, rejected, or never held) (409)."""


# ---- the rule set, reloaded when the file or the overrides change --------------------------------------


@dataclass
class _Cached:
    key: tuple[Any, ...]
    ruleset: RuleSet


_cache: dict[str, _Cached] = {}
_cache_lock = threading.Lock()


def overrides_revision(conn: psycopg.Connection) -> tuple[int, int]:
    """(highest revision, count) of the override rows: the cheap version check before each evaluation
    (a deleted row lowers the count)."""
    row = tuple_cursor(conn).execute("SELECT coalesce(max(revision), 0), count(*) FROM risk_rules").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def current_ruleset(conn: psycopg.Connection, path: Path | None = None) -> RuleSet:
    """The rules in force: the versioned file plus the database's overrides, rebuilt only when the file
    (mtime, size) or the overrides (revision) changed: edits apply without a restart."""
    path = path or rules_path()
    st = path.stat()
    rev = overrides_revision(conn)
    key = (st.st_mtime_ns, st.st_size, rev)
    with _cache_lock:
        hit = _cache.get(str(path))
        if hit is not None and hit.key == key:
            return hit.ruleset
    file_version, file_rules = parse_rules_file(path.read_text(encoding="utf-8"))
    rows = (
        tuple_cursor(conn)
        .execute("SELECT name, point, expr, outcome, reason, enabled FROM risk_rules ORDER BY revision")
        .fetchall()
    )
    overrides = [(Rule(r[0], r[1], r[2], r[3], r[4]), bool(r[5])) for r in rows]
    ruleset = RuleSet.build(file_rules, overrides, f"{file_version}/db{rev[0]}.{rev[1]}")
    with _cache_lock:
        _cache[str(path)] = _Cached(key, ruleset)
    return ruleset


def put_override(conn: psycopg.Connection, rule: Rule, *, enabled: bool, actor: str) -> int:
    """Add or replace an override (validated first: a rule that does not parse is refused); audited.
    Returns its revision."""
    validate_rule(rule)
    old = (
        tuple_cursor(conn)
        .execute(
            "SELECT name, point, expr, outcome, reason, enabled FROM risk_rules WHERE name = %s FOR UPDATE",
            (rule.name,),
        )
        .fetchone()
    )
    row = (
        tuple_cursor(conn)
        .execute(
            "INSERT INTO risk_rules (name, point, expr, outcome, reason, enabled, updated_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET point = EXCLUDED.point, expr = EXCLUDED.expr,"
            " outcome = EXCLUDED.outcome, reason = EXCLUDED.reason, enabled = EXCLUDED.enabled,"
            " revision = nextval(pg_get_serial_sequence('risk_rules', 'revision')),"
            " updated_by = EXCLUDED.updated_by, updated_at = now() RETURNING revision",
            (rule.name, rule.point, rule.expr, rule.outcome, rule.reason, enabled, actor),
        )
        .fetchone()
    )
    assert row is not None
    new = {**rule.__dict__, "enabled": enabled}
    keys = ("name", "point", "expr", "outcome", "reason", "enabled")
    record(
        conn,
        actor=actor,
        action="create" if old is None else "update",
        entity="risk_rule",
        entity_id=rule.name,
        old=None if old is None else dict(zip(keys, old, strict=True)),
        new=new,
    )
    return int(row[0])


def delete_override(conn: psycopg.Connection, name: str, *, actor: str) -> None:
    """Drop the override of a file rule (the file's rule applies again), audited. RuleNotFound when the rule
    has no override or only an override has it (switch that one off instead)."""
    _, file_rules = parse_rules_file(rules_path().read_text(encoding="utf-8"))
    if name not in {r.name for r in file_rules}:
        raise RuleNotFound(f"{name!r} is not a rule of the rules file: switch it off with enabled=false")
    with conn.cursor(row_factory=dict_row) as cur:
        old = cur.execute(
            "DELETE FROM risk_rules WHERE name = %s RETURNING name, point, expr, outcome, reason, enabled",
            (name,),
        ).fetchone()
    if old is None:
        raise RuleNotFound(f"risk rule {name!r} has no override")
    record(conn, actor=actor, action="delete", entity="risk_rule", entity_id=name, old=old, new=None)


def rules_path() -> Path:
    return Path(os.environ.get("FUEL_RISK_RULES_FILE", RULES_FILE))


def rules_in_force(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every rule of the file and of the overrides, as it is evaluated now: its expression (the threshold),
    outcome, reason and whether it is enabled; `origin` says where that comes from ("file", "override"
    of a file rule, or "added" by an override), with the file's own expression when overridden."""
    _, file_rules = parse_rules_file(rules_path().read_text(encoding="utf-8"))
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT name, point, expr, outcome, reason, enabled, revision, updated_by, updated_at"
            " FROM risk_rules ORDER BY revision"
        ).fetchall()
    overrides = {r["name"]: r for r in rows}
    out: list[dict[str, Any]] = []
    for r in file_rules:
        o = overrides.pop(r.name, None)
        base = {**r.__dict__, "enabled": True, "origin": "file", "file_expr": r.expr}
        if o is not None:
            base.update(
                {k: o[k] for k in ("point", "expr", "outcome", "reason", "enabled")}, origin="override"
            )
        out.append({**base, **_updated(o)})
    for o in overrides.values():
        keys = ("name", "point", "expr", "outcome", "reason", "enabled")
        out.append({**{k: o[k] for k in keys}, "origin": "added", "file_expr": None, **_updated(o)})
    return out


def _updated(o: dict[str, Any] | None) -> dict[str, Any]:
    return {"updated_by": o["updated_by"] if o else None, "updated_at": o["updated_at"] if o else None}


def rule_in_force(conn: psycopg.Connection, name: str) -> dict[str, Any]:
    """One rule of rules_in_force; RuleNotFound (404) for a name neither the file nor an override has."""
    for r in rules_in_force(conn):
        if r["name"] == name:
            return r
    raise RuleNotFound(f"no risk rule named {name!r} (GET /v1/risk/rules lists them)")


# ---- deny and allow lists --------------------------------------------------------------------------------


def add_to_list(
    conn: psycopg.Connection, *, kind: str, subject: str, value_hash: str, note: str, actor: str
) -> int:
    row = (
        tuple_cursor(conn)
        .execute(
            "INSERT INTO risk_lists (kind, subject, value_hash, note, created_by) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (subject, value_hash, kind) DO UPDATE SET note = EXCLUDED.note RETURNING id",
            (kind, subject, value_hash, note, actor),
        )
        .fetchone()
    )
    assert row is not None
    new = {"kind": kind, "subject": subject, "value_hash": value_hash, "note": note}
    record(conn, actor=actor, action="create", entity="risk_list", entity_id=int(row[0]), old=None, new=new)
    return int(row[0])


_LIST_COLUMNS = "id, kind, subject, value_hash, note, created_by, created_at"


def list_entries(
    conn: psycopg.Connection, *, kind: str | None = None, after_id: int = 0, limit: int = 50
) -> list[dict[str, Any]]:
    """Deny and allow list entries in id order after `after_id` (only `kind` when given)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {_LIST_COLUMNS} FROM risk_lists WHERE id > %s AND (%s::text IS NULL OR kind = %s)"
            " ORDER BY id LIMIT %s",
            (after_id, kind, kind, min(limit, MAX_PAGE)),
        ).fetchall()


def list_entry(conn: psycopg.Connection, entry_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"SELECT {_LIST_COLUMNS} FROM risk_lists WHERE id = %s", (entry_id,)).fetchone()
    if row is None:
        raise ListEntryNotFound(f"risk list entry {entry_id} not found")
    return row


def remove_from_list(conn: psycopg.Connection, entry_id: int, *, actor: str) -> dict[str, Any]:
    """Remove a deny/allow list entry (audited); the removed row. ListEntryNotFound (404)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"DELETE FROM risk_lists WHERE id = %s RETURNING {_LIST_COLUMNS}", (entry_id,)
        ).fetchone()
    if row is None:
        raise ListEntryNotFound(f"risk list entry {entry_id} not found")
    old = {k: row[k] for k in ("kind", "subject", "value_hash", "note")}
    record(conn, actor=actor, action="delete", entity="risk_list", entity_id=entry_id, old=old, new=None)
    return row


def listed(conn: psycopg.Connection, hashes: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(subjects on the deny list, subjects on the allow list) among {subject: value hash}."""
    if not hashes:
        return [], []
    subjects, values = list(hashes), [hashes[s] for s in hashes]
    rows = (
        tuple_cursor(conn)
        .execute(
            "SELECT l.kind, l.subject FROM risk_lists l"
            " JOIN unnest(%s::text[], %s::text[]) AS q(subject, value_hash) USING (subject, value_hash)",
            (subjects, values),
        )
        .fetchall()
    )
    deny = sorted({r[1] for r in rows if r[0] == "deny"})
    allow = sorted({r[1] for r in rows if r[0] == "allow"})
    return deny, allow


# ---- decisions -------------------------------------------------------------------------------------------


def log_decision(
    conn: psycopg.Connection,
    d: Decision,
    *,
    subject: Mapping[str, Any],
    action: Mapping[str, Any] | None,
    pending_keys: Sequence[str] = (),
) -> Decision:
    """Log the decision (in the caller's transaction): its facts, fired rules and rules version; the
    decision with its id. `pending_keys`: a held decision whose subject agrees on these keys with one
    still awaiting review at this point is that one (returned as stored; nothing new is logged). A
    unique index of the pending decisions on those keys (migration 0028: a held price's station, grade
    and price) keeps it so for writers at once: the second waits for the first to commit, and in a
    REPEATABLE READ transaction that cannot see the first it fails with a serialization error."""
    for _ in range(3):  # a pending decision it met may be reviewed before it is read: insert again
        row = (
            tuple_cursor(conn)
            .execute(
                "INSERT INTO risk_decisions (point, outcome, fired, facts, rules_version, subject,"
                " review_state, action) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING RETURNING id",
                (
                    d.point,
                    d.outcome,
                    Jsonb([f.as_dict() for f in d.fired]),
                    Jsonb(jsonable(d.facts)),
                    d.rules_version,
                    Jsonb(jsonable(subject)),
                    "pending" if d.outcome == "review" else None,
                    None if action is None else Jsonb(jsonable(action)),
                ),
            )
            .fetchone()
        )
        if row is not None:
            return replace(d, id=int(row[0]), subject=dict(subject))
        if not pending_keys:
            break
        pending = pending_decision(conn, d.point, subject, pending_keys)
        if pending is not None:
            return pending
    raise PendingConflict(
        f"a {d.point} decision awaiting review conflicts with {dict(subject)!r} and is being reviewed: retry"
    )


def pending_decision(
    conn: psycopg.Connection, point: str, subject: Mapping[str, Any], keys: Iterable[str]
) -> Decision | None:
    """The oldest decision at `point` awaiting review whose subject agrees with `subject` on `keys`."""
    match = {k: subject[k] for k in keys}
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT id, point, outcome, fired, facts, rules_version, subject FROM risk_decisions"
            " WHERE point = %s AND review_state = 'pending' AND subject @> %s ORDER BY id LIMIT 1",
            (point, Jsonb(jsonable(match))),
        ).fetchone()
    if row is None:
        return None
    return Decision(
        row["point"],
        row["outcome"],
        tuple(Fired(**f) for f in row["fired"]),
        row["facts"],
        row["rules_version"],
        id=int(row["id"]),
        subject=row["subject"],
    )


_COLUMNS = (
    "id, point, outcome, fired, facts, rules_version, subject, review_state, reviewed_by, reviewed_at,"
    " review_note, action, created_at"
)


def get_decision(conn: psycopg.Connection, decision_id: int, *, for_update: bool = False) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {_COLUMNS} FROM risk_decisions WHERE id = %s" + (" FOR UPDATE" if for_update else ""),
            (decision_id,),
        ).fetchone()
    if row is None:
        raise DecisionNotFound(f"risk decision {decision_id} not found")
    return row


def decisions(
    conn: psycopg.Connection, *, state: str | None = "pending", after_id: int = 0, limit: int = 50
) -> list[dict[str, Any]]:
    """Decisions in id order after `after_id`: those awaiting review by default (state None: all)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM risk_decisions WHERE id > %s"
            " AND (%s::text IS NULL OR review_state = %s) ORDER BY id LIMIT %s",
            (after_id, state, state, min(limit, MAX_PAGE)),
        ).fetchall()


def review(
    conn: psycopg.Connection, decision_id: int, *, approve: bool, note: str, actor: str
) -> dict[str, Any]:
    """Approve or reject a pending decision (audited); the row after. Approving a held price publishes it
    (store._price_review.publish_held: NewerPriceExists when a newer price would be overridden, and nothing
    is written). DecisionNotFound, AlreadyReviewed."""
    d = get_decision(conn, decision_id, for_update=True)
    if d["review_state"] != "pending":
        raise AlreadyReviewed(
            f"risk decision {decision_id} is not awaiting review ({d['review_state'] or d['outcome']})"
        )
    state = "approved" if approve else "rejected"
    new: dict[str, Any] = {"review_state": state, "review_note": note}
    if approve and isinstance(d["action"], dict) and "publish_price" in d["action"]:
        from store._price_review import publish_held  # approving a held price publishes it

        new["published"] = publish_held(conn, d, actor=actor)
    tuple_cursor(conn).execute(
        "UPDATE risk_decisions SET review_state = %s, reviewed_by = %s, reviewed_at = now(), review_note = %s"
        " WHERE id = %s",
        (state, actor, note, decision_id),
    )
    record(
        conn,
        actor=actor,
        action="update",
        entity="risk_decision",
        entity_id=decision_id,
        old={"review_state": "pending"},
        new=new,
    )
    return get_decision(conn, decision_id)


def reviewed_for(
    conn: psycopg.Connection, point: str, subject: Mapping[str, Any], keys: Iterable[str]
) -> tuple[int, str] | None:
    """(id, 'approved' or 'rejected') of the latest reviewed decision at `point` whose subject agrees on
    `keys` (a sale and its payer): a retry after an operator's review gets that review's answer."""
    match = {k: subject[k] for k in keys}
    row = (
        tuple_cursor(conn)
        .execute(
            "SELECT id, review_state FROM risk_decisions WHERE point = %s"
            " AND review_state IN ('approved', 'rejected') AND subject @> %s ORDER BY id DESC LIMIT 1",
            (point, Jsonb(jsonable(match))),
        )
        .fetchone()
    )
    return None if row is None else (int(row[0]), str(row[1]))
