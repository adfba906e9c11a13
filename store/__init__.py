"""Database layer: the pool, migrations, and one module per aggregate."""

from store._db import Database, admin_url, create_database, database_name, drop_database
from store._migrate import migrate

__all__ = ["Database", "admin_url", "create_database", "database_name", "drop_database", "migrate"]
