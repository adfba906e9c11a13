"""`make run`'s processes: the Procfile run by honcho as the Makefile runs it (development: the API, the
fake WeChat server, the fake WeChat Pay gateway and the payments worker), a demo login through both, and Ctrl-C stopping them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from config import PROJECT_ROOT
from tests._servers import free_port, fresh_rate_prefix
from tests.conftest import fresh_demo_database
from tests.test_limits import make_run_flags

HONCHO = Path(sys.executable).parent / "honcho"


@pytest.fixture(scope="module")
def demo_url(shared_data: Path) -> Iterator[str]:
    with fresh_demo_database(shared_data, "fuel_procfile") as url:
        yield url


def wait_for(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, f"honcho exited with {proc.returncode}"
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer")


def test_the_makefile_runs_the_procfile_with_honcho() -> None:
    make = (PROJECT_ROOT / "Makefile").read_text()
    recipe = make[make.index("\nrun:") :].split("\n\n", 1)[0]
    assert "honcho start -f Procfile $(RUN_ONLY)" in recipe
    assert "RUN_ONLY := -c wechat=0" in make  # outside development the fake WeChat is not started
    procfile = (PROJECT_ROOT / "Procfile").read_text()
    names = [line.split(":", 1)[0] for line in procfile.splitlines() if line and not line.startswith("#")]
    assert names[:2] == ["api", "wechat"]


def test_make_run_processes_serve_a_demo_login_and_stop_together(demo_url: str) -> None:
    api_port, wechat_port, wechatpay_port = free_port(), free_port(), free_port()
    link_port, link_ws_port, sites_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": demo_url,
        "FUEL_ENV": "development",
        "HOST": "127.0.0.1",
        "API_PORT": str(api_port),
        "WORKERS": "1",
        "WECHAT_PORT": str(wechat_port),
        "WECHATPAY_PORT": str(wechatpay_port),
        "FUEL_WECHATPAY_BASE_URL": f"http://127.0.0.1:{wechatpay_port}",
        "FUEL_LINK_PORT": str(link_port),
        "FUEL_LINK_WS_PORT": str(link_ws_port),
        "SITES_CONTROL_PORT": str(sites_port),
        "UVICORN_FLAGS": " ".join(make_run_flags()),
        "FUEL_WECHAT_API_BASE_URL": f"http://127.0.0.1:{wechat_port}",
        "FUEL_RATE_LIMIT_PREFIX": fresh_rate_prefix(),
    }
    for name in ("FUEL_SECRET_KEY", "FUEL_ADMIN_API_KEY", "FUEL_WECHAT_APPID", "FUEL_WECHAT_APP_SECRET"):
        env.pop(name, None)  # development defaults, as `make run` with no configuration
    proc = subprocess.Popen(
        [str(HONCHO), "start", "-f", "Procfile", "--no-colour"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    api, wechat = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{wechat_port}"
    try:
        wait_for(wechat + "/fake/health", proc)
        wait_for(api + "/ready", proc)
        wait_for(f"http://127.0.0.1:{wechatpay_port}/health", proc)
        # the demo login of the README: a code for an openid from the fake, then our token
        code = httpx.post(wechat + "/fake/codes", json={"openid": "demo-driver"}).json()["code"]
        login = httpx.post(api + "/v1/auth/wechat", json={"code": code})
        assert login.status_code == 200, login.text
        token = login.json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        # the simulated sites connect to the link server: the pumps' status turns live
        deadline = time.time() + 60
        while True:
            pumps = httpx.get(api + "/v1/stations/1/pumps", headers=auth)
            assert pumps.status_code == 200 and pumps.json()["pumps"], pumps.text
            if all(p["status"] != "unknown" for p in pumps.json()["pumps"]):
                break
            assert time.time() < deadline, pumps.text
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        proc.wait(timeout=30)
    for url in (api + "/health", wechat + "/fake/health"):
        with pytest.raises(httpx.HTTPError):
            httpx.get(url, timeout=2)
