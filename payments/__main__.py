"""`python -m payments COMMAND`: the fake WeChat Pay gateway, the payment workers, a trade bill."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import date
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m payments", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fake = sub.add_parser("fake-gateway", help="serve the fake WeChat Pay v3 gateway (development, tests)")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8090)
    fake.add_argument(
        "--keys-dir",
        type=Path,
        default=None,
        help="merchant and platform keys, generated there on the first start (default FUEL_WECHATPAY_DEV_KEYS_DIR)",
    )
    fake.add_argument(
        "--time-factor",
        type=float,
        default=None,
        help="multiply the notification retry schedule and the refund/invoice delays (default FUEL_WECHATPAY_FAKE_TIME_FACTOR)",
    )

    worker = sub.add_parser("worker", help="run the payment follow-up jobs (procrastinate worker)")
    worker.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="jobs at once (default FUEL_PAYMENTS_WORKER_CONCURRENCY)",
    )

    bill = sub.add_parser("bill", help="download, check and print a day's WeChat Pay trade bill")
    bill.add_argument("--date", type=date.fromisoformat, required=True, help="the bill's day, YYYY-MM-DD")

    sub.add_parser("expire-points", help="void points holds of closed orders, expire due points (FIFO)")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from config import get_settings

    settings = get_settings()
    if args.command == "fake-gateway":
        import uvicorn

        from payments._fake_gateway import create_app
        from payments._keys import ensure_dev_keys

        keys = ensure_dev_keys(args.keys_dir or settings.wechatpay_dev_keys_dir)
        factor = args.time_factor if args.time_factor is not None else settings.wechatpay_fake_time_factor
        uvicorn.run(create_app(keys, time_factor=factor), host=args.host, port=args.port, log_level="warning")
        return 0
    if args.command == "expire-points":
        import psycopg

        from payments._points import expire_points

        print(expire_points(lambda: psycopg.connect(settings.database_url)))
        return 0
    if args.command == "worker":
        from devices import register_device_hooks
        from payments._queue import run_worker_async
        from store._sessions import register_payment_hooks

        register_payment_hooks()  # a sale paid or unlocked by a job moves its fuelling session too
        register_device_hooks()  # and prints its receipt, announces it (the devices' jobs join this worker)
        from payments._points import register_points_hooks

        register_points_hooks()  # and earns, posts, voids or reverses its points

        asyncio.run(
            run_worker_async(
                settings.service_url,
                concurrency=args.concurrency or settings.payments_worker_concurrency,
                heartbeat_s=settings.payments_heartbeat_s,
                stalled_after_s=settings.payments_stalled_after_s,
            )
        )
        return 0
    from payments._errors import PaymentError
    from payments._wechatpay import PayConfig, WeChatPayClient

    try:
        trade_bill = WeChatPayClient(PayConfig.from_settings(settings)).download_trade_bill(args.date)
    except PaymentError as exc:
        print(f"bill: {exc}", file=sys.stderr)
        return 1
    s = trade_bill.summary
    print(
        f"{args.date}: {s.count} rows, orders {s.order_fen} fen, refunds {s.refund_fen} fen, fees {s.fee_yuan} CNY"
    )
    for r in trade_bill.rows:
        amount = r.refund_fen if r.trade_state == "REFUND" else r.order_fen
        print(
            f"{r.trade_time:%H:%M:%S} {r.trade_state:7} {r.out_trade_no} {r.out_refund_no or '-'} {amount} fen"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
