"""A real uvicorn server in a subprocess, for tests that need real HTTP and separate processes."""

from __future__ import annotations

import atexit
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence

import httpx

from config import PROJECT_ROOT

# Secrets of the test environment: tests never run with the development secrets.
TEST_SECRET_KEY = "test-secret-7QmZp2VxK9rT4bWc8NfJ3hLdYs6GuEa1"
TEST_ADMIN_KEY = "test-admin-5RkX8pVn2WqJ7cTz4LmB9hFd3YsGeA6u"
# Our mini-program's WeChat credentials in tests (the fake WeChat server checks them).
TEST_WECHAT_APPID = "wxtest1234567890ab"
TEST_WECHAT_APP_SECRET = "test-wechat-secret-9f8e7d6c5b4a"
# Rate-limit windows in Redis of this test run only: other runs on the machine keep theirs.
TEST_RATE_PREFIX = f"test-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def fresh_rate_prefix() -> str:
    """Rate-limit and failed-authentication windows of one test module alone."""
    return f"{TEST_RATE_PREFIX}-{uuid.uuid4().hex[:8]}"


_PORTS = random.Random()  # its own generator: the test run's seeding of `random` is the same in every process
LOWEST_PORT = 20_000


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux: ip_local_port_range; 32768 by default)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port() -> int:
    """A port nothing listens on, for a server a test starts. Chosen below the kernel's ephemeral range:
    a port the kernel hands out (port 0, or the local end of any outgoing connection) can be taken by
    another process between this check and the server's bind, which made servers fail to start with
    "address already in use" when several test processes ran at once."""
    high = max(_ephemeral_low(), LOWEST_PORT + 1_000)
    for _ in range(500):
        port = _PORTS.randrange(LOWEST_PORT, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {LOWEST_PORT} and {high}")


def service_environment(db_url: str, **extra: str) -> dict[str, str]:
    """The environment of a service process in the tests: the test secrets, Redis windows of its own (every
    module has its own database whose ids start at 1, so windows keyed by a user or sale id must not be
    shared with another module's servers)."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=db_url,
        FUEL_ENV="test",
        FUEL_SECRET_KEY=TEST_SECRET_KEY,
        FUEL_RATE_LIMIT_PREFIX=fresh_rate_prefix(),
        FUEL_ADMIN_API_KEY=TEST_ADMIN_KEY,
        FUEL_RATE_LIMIT_PER_MINUTE="1000000",
    )
    env.update(extra)
    return env


def reap_at_exit(proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """Terminate `proc` when the test process exits, if it still runs: a fixture that fails before its
    teardown must not leave a server running after the tests."""

    def reap() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    atexit.register(reap)
    return proc


class Server:
    def __init__(self, db_url: str, *, uvicorn_args: Sequence[str] = (), **env_extra: str) -> None:
        self.port = free_port()
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        env = service_environment(db_url, FUEL_DB_TIMEOUT_S="1")
        env.update(env_extra)
        self.proc = reap_at_exit(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "api.main:app",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                    "--no-proxy-headers",  # as `make run`: X-Forwarded-For is the app's to judge
                    *uvicorn_args,
                ],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=self.log,
            )
        )
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(self.base + "/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}"
                )
            time.sleep(0.3)
        raise RuntimeError("server did not become ready")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class FakeWeChat:
    """`python -m wechat fake` in its own process."""

    def __init__(self, *, code_ttl_s: float = 300.0) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "FUEL_ENV": "test",
            "FUEL_SECRET_KEY": TEST_SECRET_KEY,
            "FUEL_ADMIN_API_KEY": TEST_ADMIN_KEY,
            "FUEL_WECHAT_APPID": TEST_WECHAT_APPID,
            "FUEL_WECHAT_APP_SECRET": TEST_WECHAT_APP_SECRET,
        }
        self.proc = reap_at_exit(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "wechat",
                    "fake",
                    "--port",
                    str(self.port),
                    "--code-ttl-s",
                    str(code_ttl_s),
                ],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(self.base + "/fake/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"fake WeChat exited: {self.proc.stderr.read() if self.proc.stderr else ''}"
                )
            time.sleep(0.2)
        raise RuntimeError("fake WeChat did not start")

    def code(self, openid: str | None = None, unionid: str | None = None) -> str:
        body = {k: v for k, v in (("openid", openid), ("unionid", unionid)) if v is not None}
        r = httpx.post(self.base + "/fake/codes", json=body, timeout=5)
        assert r.status_code == 200, r.text
        return str(r.json()["code"])

    def fail_next(self, errcode: int, count: int = 1) -> None:
        assert (
            httpx.post(self.base + "/fake/failures", json={"errcode": errcode, "count": count}).status_code
            == 200
        )

    def server_env(self) -> dict[str, str]:
        """What a Server needs to log users in against this fake."""
        return {
            "FUEL_WECHAT_API_BASE_URL": self.base,
            "FUEL_WECHAT_APPID": TEST_WECHAT_APPID,
            "FUEL_WECHAT_APP_SECRET": TEST_WECHAT_APP_SECRET,
        }

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
