"""`create-db` and `migrate`."""

from __future__ import annotations

from config import get_settings
from store import create_database, database_name, migrate


def main(argv: list[str]) -> int:
    settings = get_settings()
    if argv[0] == "create-db":
        created = create_database(settings.database_url)
        name = database_name(settings.database_url)
        print(f"database {name}: {'created' if created else 'present'}, PostGIS enabled")
        return 0
    applied = migrate(settings.database_url)
    print(f"migrations: {', '.join(applied) if applied else 'up to date'}")
    return 0
