"""The station link: the OpenFSC codec, the link server, commands to sites, and the station simulator."""

from forecourt._commands import (
    VERBS,
    CommandReply,
    CommandTimeout,
    StationOffline,
    command_line,
    send_command,
)
from forecourt._openfsc import Line, ProtocolError, format_line, parse_line
from forecourt._sales import SaleFigures, expected_amount_fen, review_reason
from forecourt._site import FP, Site, SiteError

__all__ = [
    "FP",
    "VERBS",
    "CommandReply",
    "CommandTimeout",
    "Line",
    "ProtocolError",
    "SaleFigures",
    "Site",
    "SiteError",
    "StationOffline",
    "command_line",
    "expected_amount_fen",
    "format_line",
    "parse_line",
    "review_reason",
    "send_command",
]
