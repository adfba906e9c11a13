"""The project's exceptions. Each also inherits a built-in, and the API maps them to HTTP in one place."""


class FuelError(Exception):
    """Base class of every error the service raises on purpose."""


class InvalidInput(FuelError, ValueError):
    """A parameter breaks a rule. `param` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


class NoRoadNear(InvalidInput):
    """A point is farther than the snapping limit from any drivable road."""


class OutsideRegion(InvalidInput):
    """A point is outside the served region (config.Region.outside_message words it)."""


class RouteNotFound(FuelError, LookupError):
    """No drivable path joins the two points."""


class BudgetExceeded(FuelError, TimeoutError):
    """A request's work did not finish within its time budget (geo._budget); nothing was written."""


class NotFound(FuelError, LookupError):
    """An entity (station, promotion, edge) does not exist."""


class Conflict(FuelError, RuntimeError):
    """A write was based on a stale version."""


class ImplausibleValue(InvalidInput):
    """A value is well-formed but implausible (geo/_plausible.py): `rule` names the rule it breaks and
    `allowed` the allowed range as {"min", "max"} (decimal strings; None for an open side)."""

    def __init__(
        self,
        param: str,
        message: str,
        *,
        rule: str = "price.above_ceiling",
        allowed: dict[str, str | None] | None = None,
    ) -> None:
        super().__init__(param, message)
        self.rule = rule
        self.allowed = allowed

    @property
    def details(self) -> dict[str, object]:
        """What the API adds to the error body besides the message and the param."""
        out: dict[str, object] = {"rule": self.rule}
        if self.allowed is not None:
            out["allowed"] = dict(self.allowed)
        return out


class PriceAboveCeiling(ImplausibleValue):
    """A station price is above the official ceiling in force for its grade."""


class GraphCacheError(FuelError, OSError):
    """A compiled graph file is missing, truncated or fails its checksum."""


class ExtractError(FuelError, OSError):
    """An OSM extract cannot be read or fetched."""
