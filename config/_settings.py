"""One typed settings class, read from the environment (prefix FUEL_, plus DATABASE_URL/REDIS_URL)."""

from __future__ import annotations

import ipaddress
import json
import math
from collections import Counter
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEV_SECRET = "dev-only-secret-change-me"
DEV_ADMIN_KEY = "dev-admin-key"
DEV_WECHAT_APPID = "wxdev0000000000000"
DEV_WECHAT_SECRET = "dev-only-wechat-secret"
SECRET_RULE = (
    "at least 32 characters from a random generator (at least 12 different characters, no repeated "
    "pattern, an estimated 160 bits or more), e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
)


class UnsafeSettingsError(RuntimeError):
    """Settings that are only acceptable in development were used elsewhere."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FUEL_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    database_url: str = Field(
        "postgresql://root@127.0.0.1:5432/lijiang_fuel",
        validation_alias=AliasChoices("DATABASE_URL", "FUEL_DATABASE_URL"),
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", validation_alias=AliasChoices("REDIS_URL", "FUEL_REDIS_URL")
    )
    region: str = "lijiang"
    regions_dir: Path = PROJECT_ROOT / "data" / "regions"
    shared_data_dir: Path = PROJECT_ROOT.parent / "shared" / "data"
    cache_dir: Path = PROJECT_ROOT / ".cache"
    # Where the onboarding loaders write reject reports (never next to the operator's input file).
    onboarding_reports_dir: Path = PROJECT_ROOT / "reports" / "onboarding"
    # A region's own extract, overriding the path in its config (e.g. a Lijiang cut of a Geofabrik file).
    extract: Path | None = None

    pool_min_size: int = 1
    pool_max_size: int = 10
    db_timeout_s: float = 3.0
    # Threads of each worker for the endpoints that block (database, routing): None = pool_max_size + 6,
    # so the database-bound ones do not queue on the pool's lock while the rest keep a few threads
    # (anyio's default is 40 whatever the pool; see README "Concurrency").
    worker_threads: int | None = Field(None, ge=1, le=1_000)

    max_radius_m: float = 50_000.0
    default_radius_m: float = 5_000.0
    value_of_time_cny_h: float = 30.0  # default value of a driver's time in total-cost rankings
    max_limit: int = 200
    max_snap_m: float = 1_000.0
    max_matrix_cells: int = 2_500
    traffic_decay_s: float = 3_600.0
    traffic_max_ahead_s: float = 24 * 3_600.0
    traffic_profile: Path | None = None

    # --- routes a driver can trust (geo/_access.py): no through traffic on destination/private roads ---
    # entry cost (seconds) of each destination/private road edge a route drives into; 0 = plain roads
    route_restricted_penalty_s: float = Field(default=300.0, ge=0.0, le=86_400.0)
    # cost (seconds) of a U-turn at a junction that is not a dead end (OSRM's car profile: 20 s); it steers the
    # choice of route (around the block or to a dead end when that is cheaper), reported times stay driving times
    route_u_turn_penalty_s: float = Field(default=20.0, ge=0.0, le=3_600.0)

    secret_key: str = DEV_SECRET
    admin_api_key: str = (
        DEV_ADMIN_KEY  # the static operator key; "" = off (off unless set outside development)
    )
    cors_origins: list[str] = ["http://127.0.0.1:8000", "http://localhost:8000"]
    rate_limit_per_minute: int = 600
    max_body_bytes: int = 5 * 1024 * 1024

    # --- the service's database role (least privilege; created by migration 0008) ---
    # The API connects as this role, on the server and database of DATABASE_URL; migrations and the ingest
    # CLI use DATABASE_URL itself (the owner). FUEL_SERVICE_DATABASE_URL overrides the derived URL (a
    # password, another host); an empty role makes the API use DATABASE_URL as it is.
    service_db_role: str = "fuel_app"
    service_database_url: str | None = None

    # --- Read replicas (store/_db.py Database.read, store/_replicas.py) ---
    # PostgreSQL streaming standbys for nearby, map and station reads: a JSON list or a comma-separated
    # list of URLs (a multi-host URL needs the JSON form). The API connects to them as service_db_role,
    # like service_url. A standby that does not answer within replica_check_timeout_s, or lags the
    # primary by more than replica_max_lag_s / replica_max_lag_bytes, is skipped until it catches up;
    # with none usable, reads go to the primary. Checked every replica_check_interval_s per worker.
    database_read_url: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=AliasChoices("FUEL_DATABASE_READ_URL", "DATABASE_READ_URL")
    )
    replica_max_lag_s: float = Field(10.0, gt=0)
    replica_max_lag_bytes: int = Field(64 * 1024 * 1024, ge=0)
    replica_check_interval_s: float = Field(1.0, gt=0)
    replica_check_timeout_s: float = Field(1.0, gt=0)

    # --- The nearby search's in-memory copy (store/_station_cache.py, store/_station_feed.py) ---
    # Each worker holds the stations, prices and promotions of a region of at most this many stations
    # (0: never; nearby reads then always use SQL), kept exact through LISTEN/NOTIFY on the primary, and
    # price history back to station_cache_history_h hours before it loaded (older `at` use SQL).
    station_cache_max_stations: int = Field(50_000, ge=0)
    station_cache_history_h: float = Field(48.0, gt=0, le=24 * 800)
    station_cache_retry_s: float = Field(5.0, gt=0)
    # /v1/route is computed on the event loop on road graphs up to this many nodes (under 1 ms a route
    # in the demo region: a thread would add a hand-over and a contended GIL), in the thread pool above
    # (tens of ms a route on a 1M-node graph: the loop serves other requests meanwhile).
    route_on_loop_max_nodes: int = Field(200_000, ge=0)

    # --- OSRM-compatible API (/route/v1, /table/v1, /nearest/v1): bounds per request ---
    # table cells are bounded by max_matrix_cells; alternatives by geo._router.MAX_ALTERNATIVES.
    osrm_max_waypoints: int = 25  # coordinates of one route request (legs = waypoints - 1)
    osrm_max_nearest: int = 100  # `number` of the nearest service

    # ---- Bounded requests: caps and time budgets of along-route and matrix (api/_ranking, api/_routing)
    max_route_points: int = Field(5_000, ge=2)  # along-route line, after simplification
    max_route_km: float = Field(1_000.0, gt=0)  # along-route line, total length
    along_route_budget_s: float = Field(10.0, gt=0)
    max_matrix_sources: int = Field(100, ge=1)  # one search each
    max_matrix_targets: int = Field(1_000, ge=1)
    matrix_budget_s: float = Field(10.0, gt=0)

    overpass_url: str = "https://overpass-api.de/api/interpreter"
    overpass_timeout_s: float = 180.0

    # ---- Live traffic feed (POST/DELETE /v1/traffic) and a hung database failing fast ----
    # Intake rules: non-closure items may be this far ahead of our clock; closures never.
    traffic_future_skew_s: float = Field(5.0, ge=0, le=60)
    traffic_max_closure_s: float = Field(6 * 3_600.0, gt=0)  # longest closure a feed may post
    traffic_max_age_s: float = Field(3_600.0, gt=0)  # oldest observation accepted
    traffic_purge_interval_s: float = Field(300.0, gt=0)  # each worker purges stored batches this often
    traffic_purge_limit: int = Field(1_000, ge=1)  # rows deleted per purge round
    db_statement_timeout_s: float = Field(5.0, gt=0)  # PostgreSQL ends a statement after this
    db_work_deadline_s: float = Field(10.0, gt=0)  # a request's database block is cut off after this
    db_cancel_timeout_s: float = Field(0.5, gt=0)  # time given to a cancel before the socket is shut
    db_max_concurrent: int = Field(24, ge=1)  # database blocks running or waiting at once, per worker
    db_queue_wait_s: float = Field(0.5, ge=0)  # wait for one of those slots before answering 503
    db_keepalives_idle_s: int = Field(10, ge=1)
    db_keepalives_interval_s: int = Field(5, ge=1)
    db_keepalives_count: int = Field(3, ge=1)
    db_tcp_user_timeout_s: float = Field(15.0, gt=0)  # unacknowledged data: the kernel drops the link

    # ---- Plausible data (geo/_plausible.py): bounds that every write path checks (manager API, ingest
    # loaders, load-region). A price lies in [ceiling x (1 - band), ceiling] of its grade's official
    # ceiling in force at effective_from; 98# (no ceiling) in [c95 x (1 - band), c95 x (1 + 98_over_95)].
    plausible_price_band: Decimal = Field(Decimal("0.25"), gt=0, lt=1)
    plausible_98_over_95: Decimal = Field(Decimal("0.35"), ge=0, le=2)
    plausible_price_max_age_days: int = Field(365, ge=1)  # effective_from at most this many days back
    plausible_price_max_ahead_days: int = Field(60, ge=1)  # ... and at most this many days ahead
    plausible_max_percent_off: Decimal = Field(Decimal(30), gt=0, lt=100)
    plausible_max_off_per_litre: Decimal = Field(Decimal("0.30"), gt=0, lt=1)  # x the grade's ceiling
    plausible_max_off_per_order_fen: int = Field(10_000, gt=0)  # cny_off_per_order cap, integer fen
    plausible_max_topup_bonus_percent: Decimal = Field(Decimal(20), gt=0, le=100)

    # --- Security: abuse limits, fail-closed settings, bad input (api/_security.py, api/_limits.py) ---
    # The address the server listens on (`make run` sets it from HOST). The development secrets are
    # accepted only with env=development and a loopback bind_host.
    bind_host: str = "127.0.0.1"
    # /docs, /redoc and /openapi.json: None = served except in production.
    docs_enabled: bool | None = None
    # Direct peers (addresses or networks) whose X-Forwarded-For is believed, e.g. ["10.0.0.0/8"].
    trusted_proxies: list[str] = []
    # Redis key prefix of the limits shared by every worker (REDIS_URL); while Redis is unreachable
    # each worker limits on its own and tries Redis again after redis_retry_s.
    rate_limit_prefix: str = "fuel"
    redis_retry_s: float = 5.0
    # Weighted POST requests: this many matrix cells, or route points, cost one request.
    rate_cost_matrix_cells: int = Field(25, ge=1)
    rate_cost_route_points: int = Field(100, ge=1)
    # Failed API-key authentications a client address may make in a minute before 429.
    auth_failures_per_minute: int = Field(10, ge=1)
    # Validated API keys are remembered this long, at most this many, to key the rate limits.
    api_key_cache_s: float = 60.0
    api_key_cache_size: int = Field(10_000, ge=1)
    # Total bytes of request headers (431 above).
    max_header_bytes: int = Field(16_384, ge=1_024)
    # Seconds a connection may take to send a complete request head (api/_http.py, `make run`).
    header_timeout_s: float = Field(10.0, gt=0)
    # Dates in requests (`at`, `depart_at`) must lie within this many days of now.
    max_date_offset_days: int = Field(730, ge=1)

    # ---- User centre (api/_users.py, wechat/): mini-program login and session tokens ----
    # WeChat's server API: the real one in production, the fake (python -m wechat fake, `make run`) in
    # development and tests. The appid and AppSecret of our mini-program: development defaults that work
    # with the fake only; outside development they are off (login answers 503) unless set, and the
    # development values are refused.
    wechat_api_base_url: str = "https://api.weixin.qq.com"
    wechat_appid: str = DEV_WECHAT_APPID
    wechat_app_secret: str = DEV_WECHAT_SECRET
    wechat_timeout_s: float = Field(5.0, gt=0, le=30)
    # Our session tokens (signed with a key derived from secret_key, checked without a database round
    # trip) last this long; the mini-program logs in again (wx.login) when one expires.
    user_token_ttl_s: int = Field(24 * 3_600, ge=60, le=30 * 24 * 3_600)
    # Logins (POST /v1/auth/wechat) a client address may make in a minute, before 429.
    logins_per_minute: int = Field(30, ge=1)
    # A pump status older than this (or past its own valid_until) is shown as "unknown".
    pump_status_max_age_s: float = Field(60.0, gt=0)

    # ---- Web map and WeChat shapes (api/_map.py, api/_routing.py): absolute asset URLs ----
    # The public origin the WeChat mini-program loads marker icons from, e.g. https://fuel.example.cn
    # (https in production; WeChat draws remote marker images only over https). None: the origin of
    # each request (development and tests).
    public_base_url: str | None = None

    # ---- WeChat Pay v3 (payments/): the merchant, its keys and the gateway ----
    # The gateway's base URL: the real one in production, the fake gateway (payments/_fake_gateway.py,
    # `python -m payments fake-gateway`) in development and tests.
    wechatpay_base_url: str = "https://api.mch.weixin.qq.com"
    wechatpay_mchid: str = ""  # merchant number (商户号)
    wechatpay_appid: str = ""  # the mini-program's AppID
    wechatpay_apiv3_key: str = ""  # APIv3 key: 32 bytes, decrypts notifications (AEAD_AES_256_GCM)
    wechatpay_merchant_key_file: Path | None = None  # the merchant's API private key (PEM)
    wechatpay_merchant_serial_no: str = ""  # serial number of the merchant's API certificate
    wechatpay_public_key_file: Path | None = None  # WeChat Pay's platform public key (PEM)
    wechatpay_public_key_id: str = ""  # its id (PUB_KEY_ID_...), sent as Wechatpay-Serial
    wechatpay_notify_url: str = ""  # where WeChat Pay posts notifications (https in production)
    # Development: when the values above are unset, they are read from this folder, which
    # `python -m payments fake-gateway` fills with generated keys on its first start.
    wechatpay_dev_keys_dir: Path = PROJECT_ROOT / ".cache" / "wechatpay"
    wechatpay_timeout_s: float = Field(10.0, gt=0)  # one gateway call (connect and read)
    wechatpay_order_ttl_s: int = Field(900, ge=60, le=7 * 86_400)  # time_expire of an order
    wechatpay_notify_skew_s: int = Field(300, ge=1, le=3_600)  # notification timestamps within +-this
    wechatpay_notify_max_bytes: int = Field(64 * 1024, ge=1_024)  # a notification body above this: 413
    # The fake gateway's clock: its retry schedule, refund and invoice delays are multiplied by this.
    wechatpay_fake_time_factor: float = Field(1.0, gt=0, le=10)

    # ---- Payment follow-ups (payments/_queue.py): procrastinate workers, `python -m payments worker` ----
    payments_worker_concurrency: int = Field(4, ge=1, le=64)
    payments_heartbeat_s: float = Field(10.0, gt=0)  # a worker proves it is alive this often
    payments_stalled_after_s: float = Field(30.0, gt=0)  # jobs of a worker silent this long run again
    payments_sweep_after_s: float = Field(60.0, gt=0)  # orders without notification this old: queried
    payments_max_fen: int = Field(500_000, ge=1)  # plausibility: one payment is at most this (5000 CNY)
    # Paying a controller sale (payments/_sale.py): LOCKTX, CLEAR and UNLOCKTX wait this long for the site.
    payments_site_timeout_s: float = Field(10.0, gt=0, le=120)
    # An Idempotency-Key whose request stopped answering (a killed API) is taken over after this.
    payments_idempotency_lock_s: float = Field(30.0, gt=0, le=3_600)
    # ---- Station devices (devices/): receipt printers and payment announcements, payments worker jobs ----
    devices_printer_timeout_s: float = Field(10.0, gt=0, le=60)  # connect and write one print job
    # The e-invoice request page a receipt's QR code opens (?out_trade_no=... is added).
    devices_invoice_url: str = Field(
        "https://fuel.example.cn/fapiao", pattern=r"^https?://[^\s/]+\S*$", max_length=200
    )
    # The MQTT broker the stations' speakers subscribe to; topic <prefix>/stations/<id>/voice.
    devices_mqtt_host: str = "127.0.0.1"
    devices_mqtt_port: int = Field(1883, ge=1, le=65_535)
    devices_mqtt_username: str | None = None
    devices_mqtt_password: str | None = None
    devices_mqtt_timeout_s: float = Field(10.0, gt=0, le=60)  # connect and PUBACK of one announcement
    devices_voice_topic_prefix: str = Field("lijiang-fuel", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
    # ---- The station link (forecourt/): `python -m forecourt link` and the simulated sites ----
    # TCP (plain OpenFSC lines) and WebSocket (/ws/text, one line per text frame) listening addresses.
    link_host: str = "127.0.0.1"
    link_port: int = Field(7100, ge=0, le=65_535)
    link_ws_port: int = Field(7101, ge=0, le=65_535)
    link_heartbeat_s: float = Field(15.0, gt=0)  # HEARTBEAT every so often on each site connection
    link_heartbeat_timeout_s: float = Field(20.0, gt=0)  # OpenFSC: BEAT and OK within 20 s
    link_heartbeat_misses: int = Field(2, ge=1)  # missed heartbeats in a row before the link is dropped
    link_auth_timeout_s: float = Field(30.0, gt=0)  # CAPABILITY and PLAINAUTH within this, or QUIT
    link_auth_failures: int = Field(3, ge=1)  # wrong PLAINAUTHs on one connection before QUIT
    link_status_ttl_s: float = Field(60.0, gt=0)  # a reported pump status stays valid this long
    link_max_lines_per_s: int = Field(200, ge=1)  # a site sending more is disconnected
    link_command_timeout_s: float = Field(10.0, gt=0)  # default wait of forecourt.send_command
    # ---- Fuelling sessions (api/_fuelling.py, store/_sessions.py) ----
    # A session still waiting at the pump (bound, nozzle up, authorised) this long after binding expires.
    fuelling_bind_timeout_s: float = Field(300.0, ge=5, le=3_600)
    # risk control asks WeChat's getuserriskrank at bind (FUEL_RISK_WECHAT_RANK=true; off: the rank rules
    # do not fire). A failed call never blocks a bind: the rules decide without the rank.
    risk_wechat_rank: bool = False
    fuelling_sweep_s: float = Field(5.0, gt=0, le=300)  # how often each API worker expires due sessions
    # The preset's UNLOCKPUMP waits this long for the station's answer (then 504, the session cancelled).
    fuelling_preset_timeout_s: float = Field(10.0, gt=0, le=60)
    # Live WebSocket: wake-ups queued per client before it counts as too slow and is closed (4408); one
    # send may take this long; a token in the first message must come within fuelling_live_auth_timeout_s.
    fuelling_live_queue: int = Field(256, ge=4, le=10_000)
    fuelling_live_send_timeout_s: float = Field(5.0, gt=0, le=60)
    fuelling_live_auth_timeout_s: float = Field(5.0, gt=0, le=60)
    fuelling_live_pool_size: int = Field(4, ge=1, le=64)  # async connections of a worker's live readers

    @field_validator("database_read_url", mode="before")
    @classmethod
    def _read_urls(cls, value: object) -> object:
        """A JSON list, or URLs separated by commas; blanks dropped."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [u.strip() for u in text.split(",") if u.strip()]
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_settings(self) -> Settings:
        if "admin_api_key" not in self.model_fields_set and not self.dev_secrets_allowed:
            self.admin_api_key = ""  # the static admin key is off unless configured
        if not self.dev_secrets_allowed:
            # WeChat login is off unless configured; the development credentials are refused
            for name, default in (
                ("wechat_appid", DEV_WECHAT_APPID),
                ("wechat_app_secret", DEV_WECHAT_SECRET),
            ):
                if name not in self.model_fields_set:
                    setattr(self, name, "")
                elif getattr(self, name) == default:
                    raise UnsafeSettingsError(
                        f"refusing to start with the development FUEL_{name.upper()} outside development "
                        f"(env={self.env}, bind_host={self.bind_host}): set our mini-program's own"
                    )
        self.wechat_api_base_url = self.wechat_api_base_url.strip().rstrip("/")
        if not self.wechat_api_base_url.startswith(("http://", "https://")):
            raise ValueError(f"FUEL_WECHAT_API_BASE_URL: {self.wechat_api_base_url!r} is not an http(s) URL")
        if self.env == "production" and not self.wechat_api_base_url.startswith("https://"):
            raise UnsafeSettingsError(
                f"refusing to start in production with FUEL_WECHAT_API_BASE_URL={self.wechat_api_base_url!r}: "
                "WeChat's API is reached over https only"
            )
        dev = [
            name
            for name, value, default in (
                ("FUEL_SECRET_KEY", self.secret_key, DEV_SECRET),
                ("FUEL_ADMIN_API_KEY", self.admin_api_key, DEV_ADMIN_KEY),
            )
            if value == default
        ]
        if dev and not self.dev_secrets_allowed:
            raise UnsafeSettingsError(
                f"refusing to start with the development secrets ({', '.join(dev)}): they are accepted only "
                f"with FUEL_ENV=development and a loopback FUEL_BIND_HOST (env={self.env}, "
                f"bind_host={self.bind_host}); set {' and '.join(dev)}"
            )
        if self.env == "production":
            weak = [
                f"{name} ({problem})"
                for name, value in (
                    ("FUEL_SECRET_KEY", self.secret_key),
                    ("FUEL_ADMIN_API_KEY", self.admin_api_key),
                )
                if value and (problem := secret_problem(value))
            ]
            if weak:
                raise UnsafeSettingsError(
                    f"refusing to start in production with weak secrets: {'; '.join(weak)}. "
                    f"A secret needs {SECRET_RULE}"
                )
        if self.public_base_url is not None:
            self.public_base_url = self.public_base_url.strip().rstrip("/") or None
        if self.public_base_url is not None:
            scheme = self.public_base_url.split("://", 1)[0] if "://" in self.public_base_url else ""
            if scheme not in ("http", "https") or len(self.public_base_url) <= len(scheme) + 3:
                raise ValueError(f"FUEL_PUBLIC_BASE_URL: {self.public_base_url!r} is not an http(s) origin")
            if self.env == "production" and scheme != "https":
                raise UnsafeSettingsError(
                    f"refusing to start in production with FUEL_PUBLIC_BASE_URL={self.public_base_url!r}: "
                    "WeChat loads marker images over https only"
                )
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"FUEL_TRUSTED_PROXIES: {proxy!r} is not an address or network") from None
        return self

    @property
    def threads(self) -> int:
        """Threads of each worker for blocking endpoints (worker_threads, else pool_max_size + 6)."""
        return self.worker_threads if self.worker_threads is not None else self.pool_max_size + 6

    @property
    def service_url(self) -> str:
        """The URL the API connects with: FUEL_SERVICE_DATABASE_URL, else DATABASE_URL as the service role."""
        if self.service_database_url:
            return self.service_database_url
        return self._as_service_role(self.database_url)

    @property
    def service_read_urls(self) -> list[str]:
        """The read replicas' URLs as the service role (see service_url)."""
        return [self._as_service_role(u) for u in self.database_read_url]

    def _as_service_role(self, url: str) -> str:
        if not self.service_db_role:
            return url
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        params = conninfo_to_dict(url)
        params.pop("password", None)  # the owner's password is not the service role's
        params["user"] = self.service_db_role
        return make_conninfo("", **params)

    @property
    def dev_secrets_allowed(self) -> bool:
        return self.env == "development" and is_loopback(self.bind_host)

    @property
    def demo_enabled(self) -> bool:
        """The demo-only endpoints (POST /v1/auth/demo, nozzle tokens in a station's pumps): 404 elsewhere."""
        return self.env in ("development", "test")

    @property
    def uses_dev_secrets(self) -> bool:
        return self.secret_key == DEV_SECRET or self.admin_api_key == DEV_ADMIN_KEY

    @property
    def docs_served(self) -> bool:
        return self.docs_enabled if self.docs_enabled is not None else self.env != "production"

    @property
    def graph_cache_dir(self) -> Path:
        return self.cache_dir / "graphs"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def secret_problem(value: str) -> str | None:
    """Why `value` is not a strong secret (see SECRET_RULE), or None."""
    if len(value) < 32:
        return f"{len(value)} characters, fewer than 32"
    counts = Counter(value)
    if len(counts) < 12:
        return f"only {len(counts)} different characters"
    if value in (value + value)[1:-1]:
        return "a repeated pattern"
    bits = -sum(n * math.log2(n / len(value)) for n in counts.values())
    if bits < 160:
        return f"an estimated {bits:.0f} bits, below 160"
    return None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
