"""`python -m ingest COMMAND ...`: the loaders and command-line tools."""

from __future__ import annotations

import importlib
import sys

# command -> module with a `main(argv) -> int`
COMMANDS = {
    "create-db": "ingest._setup",
    "migrate": "ingest._setup",
    "load-region": "ingest._load_region",
    "roads": "ingest._roads",
    "stations": "ingest._stations",
    "prices": "ingest._prices",
    "promotions": "ingest._promotions",
    "guidance": "ingest._guidance",
    "od-pairs": "ingest._od_pairs",
    "fetch-region": "ingest._fetch_region",
    "keys": "ingest._keys",
}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or args[0] not in COMMANDS:
        print("usage: python -m ingest {" + ",".join(COMMANDS) + "} [options]", file=sys.stderr)
        return 0 if args and args[0] in ("-h", "--help") else 2
    module = importlib.import_module(COMMANDS[args[0]])
    return int(module.main(args))


if __name__ == "__main__":
    raise SystemExit(main())
