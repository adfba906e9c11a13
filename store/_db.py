"""Connection pool and database creation. Every query in the project is parameterised."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

EXTENSIONS = ("postgis",)


def admin_url(url: str) -> str:
    """The same server, database `postgres`: for creating and dropping databases."""
    return make_conninfo(url, dbname="postgres")


def database_name(url: str) -> str:
    return str(conninfo_to_dict(url).get("dbname") or "postgres")


def create_database(url: str, *, extensions: tuple[str, ...] = EXTENSIONS) -> bool:
    """Create the database named in `url` if missing and its extensions; True when it was created."""
    name = database_name(url)
    created = False
    with psycopg.connect(admin_url(url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            created = True
    with psycopg.connect(url, autocommit=True) as conn:
        for ext in extensions:
            conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(ext)))
    return created


def drop_database(url: str) -> None:
    name = database_name(url)
    with psycopg.connect(admin_url(url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class Database:
    """A psycopg 3 pool that fails fast: a request never waits longer than `timeout_s` for a connection."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, timeout_s: float = 3.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout_s,
            open=False,
            check=ConnectionPool.check_connection,
            kwargs={"connect_timeout": max(1, int(timeout_s)), "row_factory": dict_row},
            reconnect_timeout=5.0,
        )

    def open(self) -> None:
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        with self.pool.connection(timeout=self.timeout_s) as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        with self.pool.connection(timeout=self.timeout_s) as conn, conn.transaction():
            yield conn
