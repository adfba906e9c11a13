"""`python -m ingest qr --station ID [--out DIR] [--page PATH] [--rotate]` | `python -m ingest qr --revoke TOKEN`:
the QR codes of a station's nozzle stickers.

For every active nozzle of the station, a PNG (segno) of the mini-program page path with the nozzle's
token as its `scene`, e.g. `pages/pump/index?scene=<token>` (27 characters: WeChat allows 32), written
to DIR (default ./qr) as station-<id>-pump-<p>-nozzle-<n>.png, with station-<id>-codes.csv listing pump,
nozzle, grade, scene and file. A token is signed, opaque and bound to its station (store/_nozzles.py):
a sticker copied to another pump or station still names its own nozzle.

Running it again writes the same codes (the nozzles' active tokens); `--rotate` revokes the station's
tokens first and issues new ones (print and replace every sticker); `--revoke TOKEN` revokes one token
(a lost or damaged sticker): scanning it then answers 410. Issuing and revoking are audited
(actor: --actor, default cli:<os user>). Changing FUEL_SECRET_KEY invalidates every sticker.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

import psycopg
import segno

from config import get_settings
from ingest._cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Commands, add_command, described
from ingest._onboarding import add_actor_option, default_actor
from store._nozzles import IssuedToken, NozzleTokenInvalid, issue_tokens, revoke_token

DEFAULT_PAGE = "pages/pump/index"
MAX_SCENE = 32  # WeChat: a scene of at most 32 visible characters
_PAGE = re.compile(r"^[A-Za-z0-9_\-/]{1,200}$")


def qr_content(page: str, token: str) -> str:
    """What a sticker's QR code holds: the mini-program page and the token as its scene."""
    if len(token) > MAX_SCENE:
        raise ValueError(f"a scene has at most {MAX_SCENE} characters, got {len(token)}")
    return f"{page}?scene={token}"


def write_codes(issued: list[IssuedToken], out: Path, *, page: str, scale: int = 10) -> list[Path]:
    """The PNGs and the CSV list of a station's codes in `out`; returns the PNG paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    rows = []
    for t in issued:
        path = out / f"station-{t.station_id}-pump-{t.pump_no}-nozzle-{t.nozzle_no}.png"
        segno.make(qr_content(page, t.token), error="m", micro=False).save(
            str(path), kind="png", scale=scale, border=4
        )
        paths.append(path)
        rows.append(
            {
                "pump_no": t.pump_no,
                "nozzle_no": t.nozzle_no,
                "grade": t.grade,
                "scene": t.token,
                "file": path.name,
            }
        )
    if issued:
        with (out / f"station-{issued[0].station_id}-codes.csv").open(
            "w", encoding="utf-8", newline=""
        ) as fh:
            w = csv.DictWriter(fh, fieldnames=["pump_no", "nozzle_no", "grade", "scene", "file"])
            w.writeheader()
            w.writerows(rows)
    return paths


def _page(value: str) -> str:
    if not _PAGE.match(value) or value.startswith("/"):
        raise argparse.ArgumentTypeError(f"a mini-program page path like {DEFAULT_PAGE}, got {value!r}")
    return value


def add_parser(commands: Commands) -> None:
    p = add_command(
        commands,
        "qr",
        run,
        summary="write the QR codes of a station's nozzles (PNG), or revoke one",
        description=described(__doc__),
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--station", type=int, metavar="ID", help="the station whose nozzle codes to write")
    what.add_argument("--revoke", metavar="TOKEN", help="revoke one nozzle token (a sticker's scene)")
    p.add_argument("--out", type=Path, default=Path("qr"), help="folder for the PNGs (default ./qr)")
    p.add_argument(
        "--page", type=_page, default=DEFAULT_PAGE, help=f"mini-program page (default {DEFAULT_PAGE})"
    )
    p.add_argument("--rotate", action="store_true", help="revoke the station's tokens and issue new ones")
    p.add_argument(
        "--scale", type=int, default=10, choices=range(2, 41), metavar="N", help="pixels per module"
    )
    add_actor_option(p)


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    actor = args.actor or default_actor()
    with psycopg.connect(settings.database_url) as conn:
        if args.revoke is not None:
            try:
                with conn.transaction():
                    done = revoke_token(
                        conn, args.revoke.strip(), actor=actor, secret_key=settings.secret_key
                    )
            except NozzleTokenInvalid as exc:
                print(f"qr --revoke: {exc}", file=sys.stderr)
                return EXIT_USAGE
            print("revoked" if done else "already revoked")
            return EXIT_OK
        if args.station < 1:
            print("qr: --station is a station id, 1 or more", file=sys.stderr)
            return EXIT_USAGE
        with conn.transaction():
            issued = issue_tokens(
                conn, args.station, actor=actor, secret_key=settings.secret_key, rotate=args.rotate
            )
    if not issued:
        print(
            f"qr: station {args.station} has no active nozzles (load them with `python -m ingest pumps`)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    paths = write_codes(issued, args.out, page=args.page, scale=args.scale)
    new = sum(t.created for t in issued)
    print(
        f"station {args.station}: {len(paths)} codes in {args.out} ({new} new tokens, {len(issued) - new} kept)"
    )
    return EXIT_OK
