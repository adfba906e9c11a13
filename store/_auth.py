"""API keys: stored as HMAC-SHA256(secret_key, key), never in plain text.

Roles: `operator` may write every station and clear live traffic; `manager` only the stations listed
in `station_ids`; `traffic` may post live traffic and nothing else; `site` is a station's forecourt
controller on the station link (OpenFSC PLAINAUTH with its SiteAccessKey, a UUID, and secret): bound to
one station, it never authenticates on the HTTP API. A key may expire; a revoked key is kept (its name
stays the actor of its audit rows) but no longer authenticates.
The settings' admin_api_key is an operator key that is not stored (see api/_auth.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

ROLES = ("operator", "manager", "traffic", "site")
KEY_PREFIX = "lfk_"
SITE_SECRET_BYTES = 24  # a site secret: 32 URL-safe characters (an OpenFSC string: no spaces)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name (the audit actor), role and the stations a manager may write."""

    name: str
    role: str
    station_ids: frozenset[int] = frozenset()

    def may_write_station(self, station_id: int) -> bool:
        return self.role == "operator" or (self.role == "manager" and station_id in self.station_ids)


def hash_key(plaintext: str, secret_key: str) -> str:
    return hmac.new(secret_key.encode(), plaintext.encode(), hashlib.sha256).hexdigest()


def create_api_key(
    conn: psycopg.Connection,
    name: str,
    role: str,
    station_ids: Sequence[int] = (),
    *,
    secret_key: str | None = None,
    expires_at: datetime | None = None,
) -> str:
    """Store a new key and return it in plain text (shown once; only its hash is kept)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if role == "site":
        raise ValueError("site keys are created with create_site_key (a SiteAccessKey and a secret)")
    name = name.strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise ValueError("a key needs a printable name of at most 100 characters (the audit actor)")
    if role == "manager" and not station_ids:
        raise ValueError("a manager key needs the station ids it may write")
    if role != "manager" and station_ids:
        raise ValueError(f"a {role} key takes no station ids (only manager keys are scoped to stations)")
    if expires_at is not None and expires_at.tzinfo is None:
        raise ValueError("expires_at must carry a time zone")
    if secret_key is None:
        from config import get_settings

        secret_key = get_settings().secret_key
    if conn.execute("SELECT 1 FROM api_keys WHERE name = %s", (name,)).fetchone() is not None:
        raise ValueError(f"a key named {name!r} exists already (names are unique: they are audit actors)")
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO api_keys (key_hash, name, role, station_ids, expires_at) VALUES (%s, %s, %s, %s, %s)",
        (hash_key(plaintext, secret_key), name, role, sorted({int(s) for s in station_ids}), expires_at),
    )
    return plaintext


@dataclass(frozen=True)
class SiteKey:
    """A station link's credentials, shown once: PLAINAUTH <site_access_key> <secret>."""

    name: str
    station_id: int
    site_access_key: str
    secret: str


def create_site_key(
    conn: psycopg.Connection,
    name: str,
    station_id: int,
    *,
    secret_key: str | None = None,
    expires_at: datetime | None = None,
) -> SiteKey:
    """Store a site key for one station (the secret's HMAC only) and return it in plain text."""
    import uuid

    name = name.strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise ValueError("a key needs a printable name of at most 100 characters (the audit actor)")
    if expires_at is not None and expires_at.tzinfo is None:
        raise ValueError("expires_at must carry a time zone")
    if secret_key is None:
        from config import get_settings

        secret_key = get_settings().secret_key
    if conn.execute("SELECT 1 FROM stations WHERE id = %s", (station_id,)).fetchone() is None:
        raise ValueError(f"station {station_id} does not exist")
    if conn.execute("SELECT 1 FROM api_keys WHERE name = %s", (name,)).fetchone() is not None:
        raise ValueError(f"a key named {name!r} exists already (names are unique: they are audit actors)")
    access_key = str(uuid.uuid4())
    secret = secrets.token_urlsafe(SITE_SECRET_BYTES)
    conn.execute(
        "INSERT INTO api_keys (key_hash, name, role, station_ids, expires_at, site_access_key)"
        " VALUES (%s, %s, 'site', %s, %s, %s)",
        (hash_key(secret, secret_key), name, [int(station_id)], expires_at, access_key),
    )
    return SiteKey(name, int(station_id), access_key, secret)


def _as_dict(row: Any, names: Sequence[str]) -> dict[str, Any]:
    return row if isinstance(row, dict) else dict(zip(names, row, strict=True))


def principal_for_key(conn: psycopg.Connection, plaintext: str, *, secret_key: str) -> Principal | None:
    """The stored key's principal, or None when the key is unknown, revoked or expired."""
    row = conn.execute(
        "SELECT name, role, station_ids FROM api_keys WHERE key_hash = %s AND role <> 'site'"
        " AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
        (hash_key(plaintext, secret_key),),
    ).fetchone()
    if row is None:
        return None
    d = _as_dict(row, ("name", "role", "station_ids"))
    return Principal(d["name"], d["role"], frozenset(int(s) for s in d["station_ids"] or ()))


def list_api_keys(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every key (never its hash): name, role, stations, created, expiry, revocation."""
    names = ("name", "role", "station_ids", "created_at", "expires_at", "revoked_at")
    cur = conn.execute(f"SELECT {', '.join(names)} FROM api_keys ORDER BY name")
    return [_as_dict(r, names) for r in cur.fetchall()]


def revoke_api_key(conn: psycopg.Connection, name: str) -> int:
    """Revoke the key with this name (kept, no longer valid); return how many were revoked."""
    return conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL", (name,)
    ).rowcount
