"""`python -m ingest reconcile --date YYYY-MM-DD [--output FILE]`: reconcile a day's WeChat Pay trade bill.

Downloads the day's trade bill from the gateway (FUEL_WECHATPAY_BASE_URL; gzip, SHA1 checked, parsed to
integer fen), matches every transaction to our payment and its controller sale and every refund to our
refund (payments/_reconcile.py), prints the report (matches, mismatches, missing) and writes it as JSON
to FILE when asked. Each mismatch or missing item is stored as a reconciliation_alerts row, once per day,
kind and reference: running a day again adds only what is new. The day is the region's local date.
Exit status 0 when everything matched, 1 when there are findings or the bill cannot be had.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path

import psycopg

from config import get_settings, load_region
from ingest._cli import EXIT_FAILURE, EXIT_OK, Commands, add_command, described
from payments._errors import PaymentError
from payments._reconcile import OurPayment, OurRefund, Report, reconcile
from payments._wechatpay import PayConfig, WeChatPayClient
from store._sale_payments import reconciliation_records, record_alert


def add_parser(commands: Commands) -> None:
    p = add_command(
        commands,
        "reconcile",
        run,
        summary="reconcile a day's WeChat Pay trade bill with our payments and controller sales",
        description=described(__doc__),
    )
    p.add_argument("--date", type=date.fromisoformat, required=True, help="the bill's day, YYYY-MM-DD")
    p.add_argument("--output", type=Path, default=None, help="also write the report as JSON to this file")


def reconcile_day(conn: psycopg.Connection, client: WeChatPayClient, day: date, tz: object) -> Report:
    """Download, match and record the alerts of one day (the caller commits)."""
    bill = client.download_trade_bill(day)
    start = datetime.combine(day, time(0), tzinfo=tz)  # type: ignore[arg-type]
    payments, refunds, paid = reconciliation_records(
        conn,
        out_trade_nos=sorted({r.out_trade_no for r in bill.rows}),
        day_start=start,
        day_end=start + timedelta(days=1),
    )
    report = reconcile(
        day,
        bill.rows,
        {p["out_trade_no"]: OurPayment(**p) for p in payments},
        {r["out_refund_no"]: OurRefund(**r) for r in refunds},
        paid,
    )
    for f in report.findings:
        record_alert(conn, bill_date=day, kind=f.kind, ref=f.ref, detail=f.detail)
    return report


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    region = load_region(settings.region, settings)
    try:
        client = WeChatPayClient(PayConfig.from_settings(settings))
        with psycopg.connect(settings.database_url) as conn, conn.transaction():
            report = reconcile_day(conn, client, args.date, region.tz)
    except PaymentError as exc:
        print(f"ingest reconcile: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(
        f"{args.date}: {len(report.matched)} matched, {len(report.mismatches)} mismatches,"
        f" {len(report.missing)} missing"
    )
    for f in report.findings:
        print(f"  {f.kind:17} {f.ref} {json.dumps(f.detail, ensure_ascii=False, default=str)}")
    if args.output is not None:
        args.output.write_text(json.dumps(report.as_dict(), ensure_ascii=False, indent=2, default=str))
    return EXIT_OK if not report.findings else EXIT_FAILURE
