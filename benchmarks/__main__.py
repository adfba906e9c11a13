"""`python -m benchmarks [--seed S] [--quick] [--only SECTION ...]`: route-quality and performance benchmarks.

Sections: optimality, pgrouting, osmnx, quality, traffic, alternatives, perf, http, stations, ranking, load,
forecourt, payments, ledger, risk.
Writes reports/bench.md, reports/bench.json and PNG plots; prints every bar as a PASS/FAIL line at the end.
Exit status 0 when it ran (bars may FAIL: they are findings, listed in the report), 1 when a section crashed.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

SECTIONS = (
    "optimality",
    "pgrouting",
    "osmnx",
    "quality",
    "traffic",
    "alternatives",
    "perf",
    "http",
    "stations",
    "ranking",
    "load",
    "forecourt",
    "payments",
    "ledger",
    "risk",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--quick", action="store_true", help="small N and sizes: a smoke run of a minute or two"
    )
    parser.add_argument(
        "--only", action="append", choices=SECTIONS, metavar="SECTION", help=", ".join(SECTIONS)
    )
    args = parser.parse_args(argv)

    try:  # the `bench` extra; osmnx and networkx are the osmnx section's, checked here to fail at once
        import matplotlib
        import networkx  # noqa: F401
        import osmnx  # noqa: F401

        from benchmarks import _http, _perf, _quality
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in ("benchmarks", "geo", "ingest", "api", "store", "config"):
            raise
        print(
            f"benchmarks: need the optional 'bench' dependencies, and module {exc.name} is not installed: "
            "pip install -e '.[bench]'",
            file=sys.stderr,
        )
        return 1
    matplotlib.use("Agg")
    from benchmarks._common import make_ctx

    ctx = make_ctx(args.seed, args.quick)
    only = set(args.only) if args.only else None
    crashed: list[str] = []
    t_start = time.perf_counter()
    print(
        f"benchmarks: seed {args.seed}{' (quick)' if args.quick else ''}; sections: {', '.join(sorted(only or SECTIONS))}",
        flush=True,
    )
    steps = [
        ("optimality", _quality.optimality),
        ("osmnx", _quality.osmnx_agreement),
        ("quality", _quality.independent),
        ("traffic", _quality.traffic),
        ("alternatives", _quality.alternatives),
        ("perf", _perf.performance),
    ]
    for name, fn in steps:
        if only is None or name in only:
            crashed += _guard(name, lambda fn=fn: fn(ctx), ctx)
    crashed += _guard("http sections", lambda: _http.all_http(ctx, only), ctx)
    if only is None or "forecourt" in only:
        from benchmarks import _forecourt

        crashed += _guard("forecourt", lambda: _forecourt.forecourt(ctx), ctx)
    if only is None or "payments" in only:
        from benchmarks import _payments

        crashed += _guard("payments", lambda: _payments.payments(ctx), ctx)
    if only is None or "ledger" in only:
        from benchmarks import _ledger

        crashed += _guard("ledger", lambda: _ledger.ledger(ctx), ctx)
    if only is None or "risk" in only:
        from benchmarks import _risk

        crashed += _guard("risk", lambda: _risk.risk_section(ctx), ctx)
    md = ctx.report.write()
    print(
        f"\n== Summary ({time.perf_counter() - t_start:.0f} s, seed {args.seed}{', quick' if args.quick else ''})"
    )
    for b in ctx.report.bars:
        print(f"{'PASS' if b.passed else 'FAIL'}  {b.name}: {b.detail}")
    for c in crashed:
        print(f"FAIL  section crashed: {c}")
    print(f"report: {md} (+ bench.json, *.png)", flush=True)
    return 1 if crashed else 0


def _guard(name: str, fn: object, ctx: object) -> list[str]:
    t0 = time.perf_counter()
    try:
        fn()  # type: ignore[operator]
    except Exception:
        traceback.print_exc()
        from benchmarks._common import Ctx

        if isinstance(ctx, Ctx):
            s = ctx.report.section(f"{name}: CRASHED")
            s.text.append("```\n" + traceback.format_exc()[-3000:] + "\n```")
        return [name]
    print(f"  ({name}: {time.perf_counter() - t0:.0f} s)", flush=True)
    return []


if __name__ == "__main__":
    sys.exit(main())
