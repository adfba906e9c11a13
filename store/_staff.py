"""Staff accounts of a station (managers, attendants) and their console sessions.

Passwords are argon2id hashes (backoffice/_staff.py); a session is a random token of which only the SHA-256
is stored, with its expiry; the fifth failed login in a row locks the account for LOCKOUT. Every account
change, login, failed login that locks and logout writes an audit row in its own transaction."""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from backoffice import (
    SESSION_TTL,
    after_attempt,
    check_password,
    check_username,
    hash_password,
    verify_password,
)
from backoffice._staff import needs_rehash
from geo._errors import Conflict, FuelError, InvalidInput, NotFound
from store._audit import record

PURGE_AT_LOGIN = 500  # expired sessions deleted by one login at most (the hourly job takes the rest)
_FIELDS = "id, station_id, username, display_name, role, active, created_by, created_at"
# A hash to verify against when the username is unknown: the answer takes as long as for a known one.
_DUMMY_HASH = hash_password("not-a-real-password-0")


class LoginFailed(FuelError, PermissionError):
    """Wrong username or password (401; the same answer for both)."""


class AccountLocked(FuelError, PermissionError):
    """Too many failed logins in a row: locked until `until` (429 with Retry-After)."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, math.ceil(retry_after_s))


@dataclass(frozen=True)
class Staff:
    id: int
    station_id: int
    username: str
    display_name: str
    role: str

    @property
    def actor(self) -> str:
        return f"staff:{self.id}"


def _staff(d: dict[str, Any]) -> Staff:
    return Staff(d["id"], d["station_id"], d["username"], d["display_name"], d["role"])


def _hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def create_staff(
    conn: psycopg.Connection,
    *,
    station_id: int,
    username: str,
    display_name: str,
    role: str,
    password: str,
    actor: str,
) -> dict[str, Any]:
    """A new account (validated before anything is written); Conflict for a taken username, NotFound for an
    unknown station."""
    check_username(username)
    check_password(password, username=username)
    display_name = display_name.strip()
    if not 1 <= len(display_name) <= 40:
        raise InvalidInput("display_name", "must be 1-40 characters")
    password_hash = hash_password(password)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        if cur.execute("SELECT 1 FROM stations WHERE id = %s", (station_id,)).fetchone() is None:
            raise NotFound(f"station {station_id} not found")
        row = cur.execute(
            "INSERT INTO staff (station_id, username, display_name, role, password_hash, created_by)"
            f" VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (username) DO NOTHING RETURNING {_FIELDS}",
            (station_id, username, display_name, role, password_hash, actor),
        ).fetchone()
        if row is None:
            raise Conflict(f"username {username!r} is taken")
        record(
            conn,
            actor=actor,
            action="create",
            entity="staff",
            entity_id=row["id"],
            old=None,
            new={k: row[k] for k in ("station_id", "username", "display_name", "role")},
        )
    return row


def list_staff(conn: psycopg.Connection, station_id: int, *, limit: int = 200) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {_FIELDS} FROM staff WHERE station_id = %s ORDER BY role, username LIMIT %s",
            (station_id, limit),
        ).fetchall()


def get_staff(conn: psycopg.Connection, staff_id: int) -> Staff | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"SELECT {_FIELDS} FROM staff WHERE id = %s AND active", (staff_id,)).fetchone()
    return None if row is None else _staff(row)


def verify_credentials(
    conn: psycopg.Connection, username: str, password: str, *, now: datetime, address: str | None = None
) -> Staff:
    """The account of a right username and password. Wrong ones count against the account (the
    MAX_FAILURES-th in a row locks it, audited); a locked account answers AccountLocked even with the right
    password. The counters are updated under the row's lock, so parallel guesses all count."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {_FIELDS}, password_hash, failed_logins, locked_until FROM staff"
            " WHERE username = %s AND active FOR UPDATE",
            (username,),
        ).fetchone()
        if row is None:
            verify_password(_DUMMY_HASH, password)
            raise LoginFailed("wrong username or password")
        if row["locked_until"] is not None and row["locked_until"] > now:
            wait = (row["locked_until"] - now).total_seconds()
            raise AccountLocked(
                f"account {username!r} is locked after repeated failed logins; retry in {int(wait) + 1} s",
                wait,
            )
        ok = verify_password(row["password_hash"], password)
        verdict = after_attempt(row["failed_logins"], ok=ok, now=now)
        cur.execute(
            "UPDATE staff SET failed_logins = %s, locked_until = %s,"
            " password_hash = CASE WHEN %s THEN %s ELSE password_hash END WHERE id = %s",
            (
                verdict.failed_logins,
                verdict.locked_until,
                ok and needs_rehash(row["password_hash"]),
                hash_password(password) if ok and needs_rehash(row["password_hash"]) else "",
                row["id"],
            ),
        )
        if verdict.locked_until is not None:
            record(
                conn,
                actor=f"login:{address or '?'}",
                action="update",
                entity="staff",
                entity_id=row["id"],
                old={"failed_logins": row["failed_logins"]},
                new={"failed_logins": verdict.failed_logins, "locked_until": verdict.locked_until},
            )
    if not ok:
        if verdict.locked_until is not None:
            raise AccountLocked(
                f"account {username!r} is now locked after {verdict.failed_logins} failed logins",
                (verdict.locked_until - now).total_seconds(),
            )
        raise LoginFailed("wrong username or password")
    return _staff(row)


def start_session(
    conn: psycopg.Connection, staff: Staff, *, now: datetime, address: str | None
) -> tuple[str, datetime]:
    """A new session token (returned once, stored hashed) and its expiry; the login is audited."""
    token = secrets.token_urlsafe(32)
    expires = now + SESSION_TTL
    with conn.transaction():
        purge_expired_sessions(conn, now=now, limit=PURGE_AT_LOGIN)
        conn.execute(
            "INSERT INTO staff_sessions (token_hash, staff_id, created_at, expires_at) VALUES (%s, %s, %s, %s)",
            (_hash_token(token), staff.id, now, expires),
        )
        record(
            conn,
            actor=staff.actor,
            action="login",
            entity="staff",
            entity_id=staff.id,
            old=None,
            new={"address": address, "expires_at": expires},
        )
    return token, expires


def purge_expired_sessions(conn: psycopg.Connection, *, now: datetime, limit: int | None = None) -> int:
    """Delete the sessions that expired before `now` (at most `limit`, oldest first; all when None) with one
    audit row (entity `staff_session`, id `expired`) counting them; returns how many. Run at each login and
    hourly by the payments worker (payments/_queue.py)."""
    with conn.transaction():
        cur = conn.execute(
            "DELETE FROM staff_sessions WHERE token_hash IN (SELECT token_hash FROM staff_sessions"
            " WHERE expires_at <= %s ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED)",
            (now, limit),
        )
        n = cur.rowcount
        if n > 0:
            record(
                conn,
                actor="system:session-purge",
                action="delete",
                entity="staff_session",
                entity_id="expired",
                old=None,
                new={"deleted": n, "expired_before": now},
            )
    return n


def session_staff(conn: psycopg.Connection, token: str, *, now: datetime) -> Staff | None:
    """The active account of a live session token, else None."""
    if not token or len(token) > 100:
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {', '.join('s.' + f for f in _FIELDS.split(', '))} FROM staff_sessions x"
            " JOIN staff s ON s.id = x.staff_id"
            " WHERE x.token_hash = %s AND x.ended_at IS NULL AND x.expires_at > %s AND s.active",
            (_hash_token(token), now),
        ).fetchone()
    return None if row is None else _staff(row)


def end_session(conn: psycopg.Connection, token: str, staff: Staff, *, now: datetime) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE staff_sessions SET ended_at = %s WHERE token_hash = %s AND ended_at IS NULL",
            (now, _hash_token(token)),
        )
        record(
            conn,
            actor=staff.actor,
            action="update",
            entity="staff_session",
            entity_id=staff.id,
            old=None,
            new={"logout": now},
        )
