"""Versioned SQL migrations, applied in order, each recorded with its checksum in schema_migrations."""

from __future__ import annotations

import hashlib
from importlib import resources

import psycopg

_LOCK_KEY = 7_431_005  # advisory lock: several workers starting at once migrate one at a time


def _package_schema(spec: str) -> str:
    """The SQL of a `.package` migration: a schema file shipped by an installed library (its first
    non-comment line names the package and the file inside it), applied as the library ships it."""
    lines = [ln.strip() for ln in spec.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(lines) != 1 or len(lines[0].split()) != 2:
        raise RuntimeError(f"a .package migration names one package and one file, got {lines!r}")
    package, path = lines[0].split()
    return resources.files(package).joinpath(path).read_text(encoding="utf-8")


def _migrations() -> list[tuple[str, str]]:
    files = resources.files("store") / "migrations"
    out = []
    for f in files.iterdir():
        if f.name.endswith(".sql"):
            out.append((f.name, f.read_text(encoding="utf-8")))
        elif f.name.endswith(".package"):
            out.append((f.name, _package_schema(f.read_text(encoding="utf-8"))))
    return sorted(out)


def migrate(url: str) -> list[str]:
    """Apply the migrations not yet applied; return their names. A no-op on an up-to-date database."""
    applied: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0]: r[1] for r in conn.execute("SELECT version, checksum FROM schema_migrations")}
            for name, text in _migrations():
                checksum = hashlib.sha256(text.encode()).hexdigest()
                if name in done:
                    if done[name] != checksum:
                        raise RuntimeError(f"migration {name} changed after it was applied")
                    continue
                with conn.transaction():
                    conn.execute(text.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)", (name, checksum)
                    )
                applied.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied
