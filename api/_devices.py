"""A station's devices: its receipt printer and speaker (operators set them), receipt reprints (operators
and the station's managers), and what a payment sent to them. Behind API keys (api/_auth.py).

Endpoints:
- GET  /v1/stations/{id}/devices                                the printer and the speaker
- PUT  /v1/stations/{id}/devices                                set both (operators; audited; 422 when implausible)
- POST /v1/stations/{id}/payments/{out_trade_no}/reprint       a receipt copy marked 重印 (202, queued)
- GET  /v1/stations/{id}/payments/{out_trade_no}/deliveries    receipts and announcements of a payment
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from api._auth import Forbidden, authenticate, require_operator
from api._models import READ, WRITE, error_responses
from api._state import AppState, get_state
from devices import check_printer, reprint, topic_for
from geo import Conflict, InvalidInput
from store._auth import Principal
from store._devices import Delivery, StationDevices, deliveries_of, get_devices, set_devices

router = APIRouter(tags=["devices"])

StationId = Annotated[int, Path(ge=1, le=2**63 - 1, description="station id")]
OutTradeNo = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9_|*-]{6,32}$", description="the payment's out_trade_no (merchant order number)"
    ),
]
DEVICE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


class StationDevicesIn(BaseModel):
    """The station's devices; null (or absent) removes one."""

    model_config = ConfigDict(extra="forbid")
    printer_host: str | None = Field(
        None, min_length=1, max_length=253, description="the receipt printer's IP address or host name"
    )
    printer_port: int | None = Field(
        None, ge=1, le=65_535, description="its raw printing port (9100 usual; 1024-65535 accepted)"
    )
    speaker_device_id: str | None = Field(
        None, pattern=DEVICE_ID, description="the speaker's id, sent in every announcement's payload"
    )


class StationDevicesPublic(BaseModel):
    model_config = ConfigDict(extra="forbid")
    station_id: int
    printer_host: str | None
    printer_port: int | None
    speaker_device_id: str | None
    voice_topic: str = Field(description="the MQTT topic the station's speaker subscribes to (QoS 1)")
    updated_at: datetime | None


class DeliveryPublic(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int
    out_trade_no: str
    kind: str = Field(description="receipt or voice")
    copy_no: int = Field(description="receipts: 0 the original, 1.. reprints (marked 重印)")
    state: str = Field(description="pending or done")
    attempts: int
    last_error: str | None
    target: str | None = Field(description="printer host:port or MQTT topic of the last attempt")
    requested_by: str
    requested_at: datetime
    done_at: datetime | None


class DeliveriesPublic(BaseModel):
    model_config = ConfigDict(extra="forbid")
    deliveries: list[DeliveryPublic]


def _may_use_station(principal: Principal, station_id: int) -> None:
    if not principal.may_write_station(station_id):
        raise Forbidden(f"key {principal.name!r} may not use station {station_id}'s devices")


def _public(d: StationDevices, state: AppState) -> StationDevicesPublic:
    return StationDevicesPublic(
        station_id=d.station_id,
        printer_host=d.printer_host,
        printer_port=d.printer_port,
        speaker_device_id=d.speaker_device_id,
        voice_topic=topic_for(state.settings.devices_voice_topic_prefix, d.station_id),
        updated_at=None if d.updated_at is None else d.updated_at.astimezone(state.served.region.tz),
    )


def _delivery(d: Delivery, tz: tzinfo) -> DeliveryPublic:
    return DeliveryPublic(
        id=d.id,
        out_trade_no=d.out_trade_no,
        kind=d.kind,
        copy_no=d.copy_no,
        state=d.state,
        attempts=d.attempts,
        last_error=d.last_error,
        target=d.target,
        requested_by=d.requested_by,
        requested_at=d.requested_at.astimezone(tz),
        done_at=None if d.done_at is None else d.done_at.astimezone(tz),
    )


@router.get(
    "/v1/stations/{station_id}/devices",
    response_model=StationDevicesPublic,
    responses=error_responses(401, 403, 404, *READ),
)
def read_devices(
    station_id: StationId,
    principal: Principal = Depends(authenticate),
    state: AppState = Depends(get_state),
) -> StationDevicesPublic:
    """The station's receipt printer and speaker (operators and the station's managers)."""
    _may_use_station(principal, station_id)
    with state.db.connection() as conn:
        return _public(get_devices(conn, station_id), state)


@router.put(
    "/v1/stations/{station_id}/devices",
    response_model=StationDevicesPublic,
    responses=error_responses(*WRITE),
)
def put_devices(
    station_id: StationId,
    body: Annotated[StationDevicesIn, Body()],
    principal: Principal = Depends(authenticate),
    state: AppState = Depends(get_state),
) -> StationDevicesPublic:
    """Set the station's printer (host and port together) and speaker: operators only; audited. An
    implausible address (broadcast, multicast, not a host name, a port below 1024) is a 422 naming it."""
    require_operator(principal, "station devices")
    host, port = body.printer_host, body.printer_port
    if (host is None) != (port is None):
        raise InvalidInput(
            "printer_port" if port is None else "printer_host", "give printer_host and printer_port together"
        )
    if host is not None and port is not None:
        host, port = check_printer(host, port)
    with state.db.connection() as conn:
        d = set_devices(
            conn,
            station_id,
            printer_host=host,
            printer_port=port,
            speaker_device_id=body.speaker_device_id,
            actor=principal.name,
        )
    return _public(d, state)


@router.post(
    "/v1/stations/{station_id}/payments/{out_trade_no}/reprint",
    response_model=DeliveryPublic,
    status_code=202,
    responses=error_responses(401, 403, 404, 409, 422, 429, 503),
)
def post_reprint(
    station_id: StationId,
    out_trade_no: OutTradeNo,
    principal: Principal = Depends(authenticate),
    state: AppState = Depends(get_state),
) -> DeliveryPublic:
    """Print the receipt of a paid sale of the station again, marked 重印 with its copy number: queued
    (202); follow it with GET .../deliveries. 409 when the station has no printer."""
    _may_use_station(principal, station_id)
    with state.db.connection() as conn:
        if get_devices(conn, station_id).printer_host is None:
            raise Conflict(f"station {station_id} has no receipt printer: set one with PUT .../devices")
        d = reprint(conn, out_trade_no, station_id, actor=principal.name)
    return _delivery(d, state.served.region.tz)


@router.get(
    "/v1/stations/{station_id}/payments/{out_trade_no}/deliveries",
    response_model=DeliveriesPublic,
    responses=error_responses(401, 403, 404, *READ),
)
def read_deliveries(
    station_id: StationId,
    out_trade_no: OutTradeNo,
    principal: Principal = Depends(authenticate),
    state: AppState = Depends(get_state),
) -> DeliveriesPublic:
    """The receipts (with reprints) and announcements of one of the station's payments."""
    _may_use_station(principal, station_id)
    with state.db.connection() as conn:
        get_devices(conn, station_id)  # 404 for an unknown station
        rows = [d for d in deliveries_of(conn, out_trade_no) if d.station_id == station_id]
    return DeliveriesPublic(deliveries=[_delivery(d, state.served.region.tz) for d in rows])
