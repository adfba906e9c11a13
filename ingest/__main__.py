"""`python -m ingest COMMAND ...`: the loaders and command-line tools, as one command group.

`python -m ingest --help` lists the commands; `python -m ingest COMMAND --help` describes one and
touches nothing. Exit status: 0 ok, 1 failure (one line on stderr), 2 usage error.
"""

from __future__ import annotations

import argparse
import sys

import psycopg
from pydantic import ValidationError

from config import UnsafeSettingsError
from geo._errors import FuelError
from ingest import (
    _fetch_region,
    _guidance,
    _keys,
    _load_region,
    _od_pairs,
    _prices,
    _promotions,
    _pumps,
    _qr,
    _reconcile,
    _roads,
    _setup,
    _stations,
)
from ingest._cli import EXIT_USAGE, described, fail, join_token_values, one_line

# In the order of a first set-up: database, region, then the feeds and tools.
MODULES = (
    _setup,  # create-db, migrate
    _load_region,
    _fetch_region,
    _roads,
    _stations,
    _prices,
    _promotions,
    _pumps,
    _qr,
    _guidance,
    _keys,
    _od_pairs,
    _reconcile,  # the day's WeChat Pay trade bill against our payments and sales
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ingest",
        description=described(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The database is DATABASE_URL; settings are read from FUEL_* variables (see README).",
    )
    commands = p.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    for module in MODULES:
        module.add_parser(commands)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(join_token_values(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help (0) or a usage error (2): argparse has printed it
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return int(args.run(args))
    except (psycopg.Error, FuelError, OSError, UnsafeSettingsError, ValidationError) as exc:
        return fail(args.command, one_line(exc))
    except KeyboardInterrupt:
        print(f"ingest {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
