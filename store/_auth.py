"""API keys: stored as HMAC-SHA256(secret_key, key), never in plain text.

Roles: `operator` may write every station; `manager` only the stations listed in `station_ids`.
The settings' admin_api_key is an operator key that is not stored (see api/_auth.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

ROLES = ("operator", "manager")
KEY_PREFIX = "lfk_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name (the audit actor), role and the stations a manager may write."""

    name: str
    role: str
    station_ids: frozenset[int] = frozenset()

    def may_write_station(self, station_id: int) -> bool:
        return self.role == "operator" or station_id in self.station_ids


def hash_key(plaintext: str, secret_key: str) -> str:
    return hmac.new(secret_key.encode(), plaintext.encode(), hashlib.sha256).hexdigest()


def create_api_key(
    conn: psycopg.Connection,
    name: str,
    role: str,
    station_ids: Sequence[int] = (),
    *,
    secret_key: str | None = None,
) -> str:
    """Store a new key and return it in plain text (shown once; only its hash is kept)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not name.strip():
        raise ValueError("a key needs a name (it is the actor in the audit log)")
    if role == "manager" and not station_ids:
        raise ValueError("a manager key needs the station ids it may write")
    if secret_key is None:
        from config import get_settings

        secret_key = get_settings().secret_key
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO api_keys (key_hash, name, role, station_ids) VALUES (%s, %s, %s, %s)",
        (hash_key(plaintext, secret_key), name.strip(), role, sorted({int(s) for s in station_ids})),
    )
    return plaintext


def principal_for_key(conn: psycopg.Connection, plaintext: str, *, secret_key: str) -> Principal | None:
    """The stored key's principal, or None when the key is unknown."""
    row = conn.execute(
        "SELECT name, role, station_ids FROM api_keys WHERE key_hash = %s", (hash_key(plaintext, secret_key),)
    ).fetchone()
    if row is None:
        return None
    d = row if isinstance(row, dict) else {"name": row[0], "role": row[1], "station_ids": row[2]}
    return Principal(d["name"], d["role"], frozenset(int(s) for s in d["station_ids"] or ()))


def revoke_api_key(conn: psycopg.Connection, name: str) -> int:
    """Delete the keys with this name; return how many."""
    return conn.execute("DELETE FROM api_keys WHERE name = %s", (name,)).rowcount
