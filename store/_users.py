"""Users: one row per WeChat openid of our mini-program. Logins are audited; users are marked deleted,
never removed (their orders and audit rows keep an owner)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from geo._errors import FuelError
from store._audit import record


@dataclass(frozen=True)
class User:
    """Who is calling, from a valid session token (api/_users.py)."""

    id: int
    openid: str


@dataclass(frozen=True)
class UserRow:
    id: int
    openid: str
    unionid: str | None
    phone: str | None
    created_at: datetime
    last_login_at: datetime
    deleted_at: datetime | None

    @property
    def user(self) -> User:
        return User(self.id, self.openid)


class UserDeleted(FuelError, PermissionError):
    """The account was deleted: it cannot log in (403)."""


_FIELDS = "id, openid, unionid, phone, created_at, last_login_at, deleted_at"


def _row(cur: psycopg.Cursor[Any]) -> dict[str, Any] | None:
    r = cur.fetchone()
    if r is None:
        return None
    names = [d.name for d in cur.description or ()]
    return r if isinstance(r, dict) else dict(zip(names, r, strict=True))


def _user_row(d: dict[str, Any]) -> UserRow:
    return UserRow(**{k: d[k] for k in _FIELDS.split(", ")})


def login(
    conn: psycopg.Connection,
    *,
    openid: str,
    unionid: str | None,
    address: str | None = None,
    via: str = "wechat",
) -> tuple[UserRow, bool]:
    """The user of `openid` after a successful WeChat login, created on the first one (returns
    (user, created)); the unionid is kept when WeChat gives one. One audit row per login (actor
    `user:<id>`). UserDeleted for a deleted account. Runs in one transaction."""
    with conn.transaction():
        cur = conn.execute(
            f"INSERT INTO users (openid, unionid) VALUES (%s, %s)"
            f" ON CONFLICT (openid) DO UPDATE SET last_login_at = now(),"
            f" unionid = COALESCE(EXCLUDED.unionid, users.unionid)"
            f" WHERE users.deleted_at IS NULL"
            f" RETURNING {_FIELDS}, (xmax = 0) AS created",
            (openid, unionid),
        )
        d = _row(cur)
        if d is None:
            raise UserDeleted("this account was deleted: it cannot log in again")
        user = _user_row(d)
        created = bool(d["created"])
        record(
            conn,
            actor=f"user:{user.id}",
            action="create" if created else "login",
            entity="user",
            entity_id=user.id,
            old=None,
            new={"via": via, "unionid": unionid is not None, "address": address},
        )
    return user, created


def get_user(conn: psycopg.Connection, user_id: int) -> UserRow | None:
    d = _row(conn.execute(f"SELECT {_FIELDS} FROM users WHERE id = %s", (user_id,)))
    return None if d is None else _user_row(d)


def mark_deleted(conn: psycopg.Connection, user_id: int, *, actor: str) -> bool:
    """Mark a user deleted (kept for its orders and audit rows); False when there is none to mark."""
    with conn.transaction():
        n = conn.execute(
            "UPDATE users SET deleted_at = now() WHERE id = %s AND deleted_at IS NULL", (user_id,)
        ).rowcount
        if n:
            record(
                conn,
                actor=actor,
                action="delete",
                entity="user",
                entity_id=user_id,
                old={"deleted": False},
                new={"deleted": True},
            )
    return bool(n)


def is_active(conn: psycopg.Connection, user: User) -> bool:
    """Whether the token's user still exists as it was issued: not deleted, same openid (a deleted account's
    tokens stop working at once, on every worker)."""
    r = conn.execute(
        "SELECT 1 FROM users WHERE id = %s AND openid = %s AND deleted_at IS NULL", (user.id, user.openid)
    ).fetchone()
    return r is not None


def anonymised_openid(user_id: int) -> str:
    """What replaces a deleted user's openid on its rows (not a WeChat openid: those never contain ':')."""
    return f"deleted:{user_id}"


def delete_account(conn: psycopg.Connection, user_id: int, *, actor: str) -> dict[str, int]:
    """Delete the user's account in one transaction: personal data removed (openid and unionid replaced or
    cleared, phone, odometer readings, the client's idempotency keys), the account marked deleted so its
    tokens stop working, the payments kept as accounting law requires (amounts, station, time, WeChat
    transaction ids, invoice references) with the openid anonymised. Audited; returns the counts of what
    changed (all 0 when the account was deleted already)."""
    with conn.transaction():
        d = _row(
            conn.execute(
                "SELECT openid FROM users WHERE id = %s AND deleted_at IS NULL FOR UPDATE", (user_id,)
            )
        )
        if d is None:
            return {"deleted": 0, "payments": 0, "odometers": 0, "idempotency_keys": 0}
        anon = anonymised_openid(user_id)
        payments = conn.execute(
            "UPDATE payments SET openid = %s, updated_at = now() WHERE openid = %s", (anon, d["openid"])
        ).rowcount
        odometers = conn.execute("DELETE FROM record_odometers WHERE user_id = %s", (user_id,)).rowcount
        keys = conn.execute("DELETE FROM idempotency_keys WHERE user_id = %s", (user_id,)).rowcount
        conn.execute(
            "UPDATE users SET openid = %s, unionid = NULL, phone = NULL, deleted_at = now(), anonymised_at = now()"
            " WHERE id = %s",
            (anon, user_id),
        )
        counts = {"deleted": 1, "payments": payments, "odometers": odometers, "idempotency_keys": keys}
        record(
            conn,
            actor=actor,
            action="delete",
            entity="user",
            entity_id=user_id,
            old={"deleted": False},
            new={"deleted": True, "anonymised": True, **counts},
        )
    return counts
