"""What the app holds while it runs: settings, the served region, the pool, the router."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from config import Region, ServedRegion, Settings
from store import Database


@dataclass
class AppState:
    settings: Settings
    served: ServedRegion
    db: Database
    router: Any = None  # geo.Router once the road graph is loaded
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def region(self) -> Region:
        return self.served.region


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.fuel
    return state
