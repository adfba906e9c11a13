"""What every command of `python -m ingest` shares: how it registers, and how it says it failed.

Each command module has `add_parser(commands)`, which adds its subparser (summary, options) and sets
`run`, a `run(args) -> int` that acts only once the whole command line has parsed. Exit status: 0 ok,
1 failure (one line on stderr), 2 usage error (argparse's own, or an input that cannot be used).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

Commands = argparse._SubParsersAction  # what `ArgumentParser.add_subparsers()` returns
Run = Callable[[argparse.Namespace], int]


def add_command(
    commands: Commands, name: str, run: Run, *, summary: str, description: str | None = None
) -> argparse.ArgumentParser:
    """Register `name`: `summary` is its line in `python -m ingest --help`; `description` (plain text,
    kept as written) opens its own `--help`."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=(description or summary).strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=run)
    return parser


# Options whose value is a nozzle token: base64url, so it may start with "-", which argparse would take for an
# option ("--revoke -9Tf..." is "expected one argument"). main() joins them as "--revoke=-9Tf...".
TOKEN_OPTIONS = frozenset({"--revoke"})


def join_token_values(argv: list[str]) -> list[str]:
    """`argv` with each TOKEN_OPTIONS option and the value after it joined by "=" (argparse then takes a
    value starting with "-" as the value)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in TOKEN_OPTIONS and i + 1 < len(argv):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def described(doc: str | None) -> str:
    """A module docstring as a command's description: without its leading `python -m ingest ...`: usage
    (argparse prints the usage itself), starting with a capital."""
    text = re.sub(r"^\s*`[^`]*`[:.]?\s*", "", doc or "").strip()
    return text[:1].upper() + text[1:]


def one_line(exc: BaseException) -> str:
    """An exception as one line (psycopg and pydantic messages span several)."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return text or exc.__class__.__name__


def fail(command: str, message: str) -> int:
    print(f"ingest {command}: {message}", file=sys.stderr)
    return EXIT_FAILURE


def missing_extra(exc: ModuleNotFoundError, *, extra: str, command: str) -> int:
    """The command needs the optional dependencies of `extra` and one of them is not installed."""
    return fail(
        command,
        f"needs the optional '{extra}' dependencies, and module {exc.name} is not installed: "
        f"pip install 'lijiang-fuel[{extra}]' (in a checkout: pip install -e '.[{extra}]')",
    )
