"""One typed settings class, read from the environment (prefix FUEL_, plus DATABASE_URL/REDIS_URL)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEV_SECRET = "dev-only-secret-change-me"
DEV_ADMIN_KEY = "dev-admin-key"


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
    # A region's own extract, overriding the path in its config (e.g. a Lijiang cut of a Geofabrik file).
    extract: Path | None = None

    pool_min_size: int = 1
    pool_max_size: int = 10
    db_timeout_s: float = 3.0

    max_radius_m: float = 50_000.0
    default_radius_m: float = 5_000.0
    value_of_time_cny_h: float = 30.0  # default value of a driver's time in total-cost rankings
    max_limit: int = 200
    max_snap_m: float = 1_000.0
    max_matrix_cells: int = 2_500
    traffic_decay_s: float = 3_600.0
    traffic_max_ahead_s: float = 24 * 3_600.0
    traffic_profile: Path | None = None

    secret_key: str = DEV_SECRET
    admin_api_key: str = DEV_ADMIN_KEY
    cors_origins: list[str] = ["http://127.0.0.1:8000", "http://localhost:8000"]
    rate_limit_per_minute: int = 600
    max_body_bytes: int = 5 * 1024 * 1024

    # ---- Bounded requests: caps and time budgets of along-route and matrix (api/_ranking, api/_routing)
    max_route_points: int = Field(5_000, ge=2)  # along-route line, after simplification
    max_route_km: float = Field(1_000.0, gt=0)  # along-route line, total length
    along_route_budget_s: float = Field(10.0, gt=0)
    max_matrix_sources: int = Field(100, ge=1)  # one search each
    max_matrix_targets: int = Field(1_000, ge=1)
    matrix_budget_s: float = Field(10.0, gt=0)

    overpass_url: str = "https://overpass-api.de/api/interpreter"
    overpass_timeout_s: float = 180.0

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
        if self.env == "production":
            unsafe = [
                name
                for name, value, default in (
                    ("FUEL_SECRET_KEY", self.secret_key, DEV_SECRET),
                    ("FUEL_ADMIN_API_KEY", self.admin_api_key, DEV_ADMIN_KEY),
                )
                if value == default or len(value) < 16
            ]
            if unsafe:
                raise UnsafeSettingsError(
                    f"refusing to start in production with development secrets: {', '.join(unsafe)}"
                )
        return self

    @property
    def graph_cache_dir(self) -> Path:
        return self.cache_dir / "graphs"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
