"""Processes for the payment tests: the fake WeChat Pay gateway, an API server and a payments worker,
each a real subprocess, configured like production through FUEL_WECHATPAY_* settings."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from config import PROJECT_ROOT
from payments import PayConfig, WeChatPayClient
from payments._keys import PLATFORM_PUBLIC, DevKeys
from tests._servers import free_port, reap_at_exit, service_environment


def wait_for(
    check: Callable[[], Any], *, timeout_s: float = 20.0, every_s: float = 0.1, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


class Proc:
    """A subprocess with its stderr in a temporary file (shown when it fails to start)."""

    def __init__(
        self, args: list[str], env: dict[str, str], *, ready: Callable[[], bool] | None, what: str
    ) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        self.proc = reap_at_exit(
            subprocess.Popen(
                [sys.executable, *args], cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self.log
            )
        )
        if ready is not None:
            deadline = time.monotonic() + 90
            while not ready():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.log.seek(0)
                    raise RuntimeError(f"{what} did not start: {self.log.read().decode()[-3000:]}")
                time.sleep(0.2)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind, like a crash."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class FakeGatewayProcess(Proc):
    def __init__(self, keys_dir: Path, *, time_factor: float = 0.02) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [
                "-m",
                "payments",
                "fake-gateway",
                "--port",
                str(self.port),
                "--keys-dir",
                str(keys_dir),
                "--time-factor",
                str(time_factor),
            ],
            dict(os.environ),
            ready=lambda: _up(self.base + "/health"),
            what="the fake gateway",
        )

    def control(self, name: str, **body: Any) -> Any:
        r = httpx.post(f"{self.base}/fake/{name}", json=body, timeout=10)
        return r.status_code, r.json()

    def get(self, name: str) -> Any:
        return httpx.get(f"{self.base}/fake/{name}", timeout=10).json()


def payment_env(keys: DevKeys, gateway: FakeGatewayProcess, notify_url: str) -> dict[str, str]:
    """FUEL_WECHATPAY_* of a merchant whose gateway is the fake: the production settings, nothing else."""
    return {
        "FUEL_WECHATPAY_BASE_URL": gateway.base,
        "FUEL_WECHATPAY_MCHID": keys.mchid,
        "FUEL_WECHATPAY_APPID": keys.appid,
        "FUEL_WECHATPAY_APIV3_KEY": keys.apiv3_key,
        "FUEL_WECHATPAY_MERCHANT_KEY_FILE": str(keys.folder / "merchant_private.pem"),
        "FUEL_WECHATPAY_MERCHANT_SERIAL_NO": keys.merchant_serial_no,
        "FUEL_WECHATPAY_PUBLIC_KEY_FILE": str(keys.folder / PLATFORM_PUBLIC),
        "FUEL_WECHATPAY_PUBLIC_KEY_ID": keys.public_key_id,
        "FUEL_WECHATPAY_NOTIFY_URL": notify_url,
        "FUEL_WECHATPAY_DEV_KEYS_DIR": "/nonexistent",  # nothing falls back to generated keys
    }


def client_for(
    keys: DevKeys, base_url: str, notify_url: str = "https://example.invalid/notify", **overrides: Any
) -> WeChatPayClient:
    values: dict[str, Any] = {
        "base_url": base_url,
        "mchid": keys.mchid,
        "appid": keys.appid,
        "apiv3_key": keys.apiv3_key,
        "merchant_private_pem": keys.merchant_private_pem,
        "merchant_serial_no": keys.merchant_serial_no,
        "public_key_pem": keys.platform_public_pem,
        "public_key_id": keys.public_key_id,
        "notify_url": notify_url,
        "timeout_s": 10.0,
    }
    values.update(overrides)
    return WeChatPayClient(PayConfig(**values))


def service_env(db_url: str, extra: dict[str, str]) -> dict[str, str]:
    # payments need no road graph: no extract, a fast start
    return service_environment(db_url, FUEL_EXTRACT="/nonexistent/no-roads.osm.pbf", **extra)


class ApiProcess(Proc):
    """The API under uvicorn (as tests._servers.Server, but ready on /health: no road graph here)."""

    def __init__(self, env: dict[str, str], *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [
                "-m",
                "uvicorn",
                "api.main:app",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-proxy-headers",
            ],
            env,
            ready=lambda: _up(self.base + "/health"),
            what="the API",
        )


class WorkerProcess(Proc):
    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(["-m", "payments", "worker"], env, ready=None, what="the payments worker")


def notification_body(
    keys: DevKeys,
    resource: dict[str, Any],
    *,
    apiv3: bytes | None = None,
    tamper: bool = False,
    nid: str | None = None,
) -> bytes:
    """A TRANSACTION.SUCCESS notification as WeChat Pay sends it: the resource encrypted (AEAD_AES_256_GCM)."""
    nonce = secrets.token_hex(6)
    cipher = AESGCM(apiv3 or keys.apiv3_key.encode()).encrypt(
        nonce.encode(), json.dumps(resource).encode(), b"transaction"
    )
    if tamper:
        cipher = bytes([cipher[0] ^ 1]) + cipher[1:]
    envelope = {
        "id": nid or str(uuid.uuid4()),
        "create_time": "2026-01-01T10:00:00+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "TRANSACTION.SUCCESS",
        "summary": "支付成功",
        "resource": {
            "original_type": "transaction",
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": base64.b64encode(cipher).decode(),
            "associated_data": "transaction",
            "nonce": nonce,
        },
    }
    return json.dumps(envelope, ensure_ascii=False).encode()


def notification_headers(
    keys: DevKeys, body: bytes, *, stamp: int | None = None, signer: Any = None, serial: str | None = None
) -> dict[str, str]:
    """Wechatpay-* headers signing `body` with the platform key (or `signer`, to forge)."""
    key = signer or serialization.load_pem_private_key(keys.platform_private_pem.encode(), password=None)
    ts, nonce = str(int(time.time()) if stamp is None else stamp), secrets.token_hex(16)
    sig = key.sign(f"{ts}\n{nonce}\n{body.decode()}\n".encode(), padding.PKCS1v15(), hashes.SHA256())
    return {
        "Content-Type": "application/json",
        "Wechatpay-Timestamp": ts,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Serial": serial or keys.public_key_id,
        "Wechatpay-Signature": base64.b64encode(sig).decode(),
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }
