"""`python -m ingest`: one command group; `--help` prints help and touches nothing; clear exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from config import PROJECT_ROOT
from store import admin_url, database_name, drop_database
from tests._servers import TEST_ADMIN_KEY, TEST_SECRET_KEY
from tests.conftest import BASE_URL

COMMANDS = (
    "create-db",
    "migrate",
    "load-region",
    "fetch-region",
    "roads",
    "stations",
    "prices",
    "promotions",
    "guidance",
    "keys",
    "od-pairs",
)


@pytest.fixture
def probe_url() -> Iterator[str]:
    """A database that does not exist: any command that acts on the database fails on it or creates it."""
    url = make_conninfo(BASE_URL, dbname=f"fuel_probe_{uuid.uuid4().hex[:12]}")
    assert not _exists(url)
    yield url
    drop_database(url)  # in case a command created it (the test has failed then)


def _exists(url: str) -> bool:
    with psycopg.connect(admin_url(url), autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database_name(url),)).fetchone()
        return row is not None


def _ingest(tmp_path: Path, db_url: str, *args: str, pre: str = "") -> subprocess.CompletedProcess[str]:
    """`python -m ingest ARGS` from an empty folder, with the cache in that folder and no bytecode writes."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    env = dict(
        os.environ,
        DATABASE_URL=db_url,
        FUEL_ENV="test",
        FUEL_SECRET_KEY=TEST_SECRET_KEY,
        FUEL_ADMIN_API_KEY=TEST_ADMIN_KEY,
        FUEL_CACHE_DIR=str(work / ".cache"),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONPATH=str(PROJECT_ROOT),
    )
    env.pop("FUEL_EXTRACT", None)
    cmd = [sys.executable, "-c", f"{pre}import runpy; runpy.run_module('ingest', run_name='__main__')"]
    if not pre:
        cmd = [sys.executable, "-m", "ingest"]
    return subprocess.run(
        [*cmd, *args], cwd=work, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _files(tmp_path: Path) -> list[Path]:
    """Everything under tmp_path but the empty working folder the command ran in."""
    return sorted(p for p in tmp_path.rglob("*") if p != tmp_path / "work")


def test_help_lists_every_command_with_a_summary(tmp_path: Path, probe_url: str) -> None:
    done = _ingest(tmp_path, probe_url, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m ingest")
    lines = done.stdout.splitlines()
    for command in COMMANDS:
        at = next((i for i, x in enumerate(lines) if x.split()[:1] == [command]), None)
        assert at is not None, f"{command} is not listed in --help"
        # argparse puts the summary of a long command name on the next line
        summary = lines[at].split(maxsplit=1)[1:] or lines[at + 1].split(maxsplit=1)
        assert len(" ".join(summary).split()) >= 3, f"{command} has no one-line summary"
    assert not _exists(probe_url)


@pytest.mark.parametrize(
    "args",
    [[c, "--help"] for c in COMMANDS] + [["keys", a, "--help"] for a in ("create", "list", "revoke")],
    ids=lambda a: " ".join(a),
)
def test_command_help_prints_usage_and_touches_nothing(
    tmp_path: Path, probe_url: str, args: list[str]
) -> None:
    done = _ingest(tmp_path, probe_url, *args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m ingest {' '.join(args[:-1])}"), done.stdout
    assert done.stderr == ""
    assert not _exists(probe_url), f"`{' '.join(args)}` acted on the database"
    assert _files(tmp_path) == [], f"`{' '.join(args)}` wrote files"


@pytest.mark.parametrize("args", [[], ["no-such-command"], ["roads"], ["migrate", "--bogus"]])
def test_usage_errors_exit_2(tmp_path: Path, probe_url: str, args: list[str]) -> None:
    done = _ingest(tmp_path, probe_url, *args)
    assert done.returncode == 2
    assert done.stdout == "" and "usage: python -m ingest" in done.stderr
    assert not _exists(probe_url)


@pytest.mark.parametrize("args", [["migrate"], ["keys", "list"], ["guidance"]])
def test_failures_exit_1_with_one_line(tmp_path: Path, probe_url: str, args: list[str]) -> None:
    """A database that cannot be reached is a failure said in one line on stderr, not a traceback."""
    done = _ingest(tmp_path, probe_url, *args)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ingest {args[0]}: "), done.stderr
    assert database_name(probe_url) in lines[0]
    assert not _exists(probe_url)


def test_fetch_region_without_its_extra_says_how_to_install_it(tmp_path: Path, probe_url: str) -> None:
    done = _ingest(
        tmp_path, probe_url, "fetch-region", "lijiang", pre="import sys; sys.modules['osmnx'] = None; "
    )
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "osmnx" in lines[0] and "pip install" in lines[0] and "[fetch]" in lines[0]
    assert _files(tmp_path) == []
