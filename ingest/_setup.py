"""`create-db` and `migrate`: the database of DATABASE_URL, made ready for the loaders and the API."""

from __future__ import annotations

import argparse

from config import get_settings
from ingest._cli import Commands, add_command
from store import create_database, database_name, migrate


def add_parser(commands: Commands) -> None:
    add_command(
        commands,
        "create-db",
        run_create_db,
        summary="create the database of DATABASE_URL if it is missing, and enable PostGIS",
        description="Create the database named in DATABASE_URL when it does not exist (connecting to the "
        "server's `postgres` database), then enable PostGIS in it. Idempotent.",
    )
    add_command(
        commands,
        "migrate",
        run_migrate,
        summary="apply the schema migrations not yet applied (store/migrations)",
        description="Apply, in order, the SQL migrations of store/migrations that the database of "
        "DATABASE_URL has not applied yet, each in its own transaction. Idempotent.",
    )


def run_create_db(args: argparse.Namespace) -> int:
    url = get_settings().database_url
    created = create_database(url)
    print(f"database {database_name(url)}: {'created' if created else 'present'}, PostGIS enabled")
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    applied = migrate(get_settings().database_url)
    print(f"migrations: {', '.join(applied) if applied else 'up to date'}")
    return 0
