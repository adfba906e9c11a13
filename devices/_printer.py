"""Sending a print job to a network receipt printer: raw TCP (the "9100" / JetDirect protocol) through
python-escpos' Network printer. The job's bytes are built beforehand (devices/_receipt.py)."""

from __future__ import annotations

import ipaddress
import re

from escpos.exceptions import DeviceNotFoundError
from escpos.printer import Network

from geo import FuelError, ImplausibleValue

PORT_MIN, PORT_MAX = 1024, 65535  # below 1024 are other services' well-known ports (80, 443, 515 ...)
HOST_MAX = 253
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class PrinterUnreachable(FuelError, ConnectionError):
    """The printer did not take the job (refused, timed out, reset): the queue tries again later."""


def check_printer(host: str, port: int) -> tuple[str, int]:
    """A printer address that can be one: an IPv4/IPv6 literal that is a unicast host, or a DNS name;
    a port 1024-65535. Returns (host, port) normalised; raises ImplausibleValue naming the field."""
    host = host.strip()
    if not 1 <= len(host) <= HOST_MAX:
        raise ImplausibleValue(
            "printer_host", f"must be 1-{HOST_MAX} characters", rule="printer.host", allowed=None
        )
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    if ip is not None:
        if ip.is_unspecified or ip.is_multicast or (ip.version == 4 and str(ip) == "255.255.255.255"):
            raise ImplausibleValue(
                "printer_host",
                f"{host} is not a printer's address (unspecified, broadcast or multicast)",
                rule="printer.host",
            )
        host = str(ip)
    else:
        labels = host.rstrip(".").split(".")
        if not all(_LABEL.match(x) for x in labels) or labels[-1].isdigit():
            raise ImplausibleValue(
                "printer_host", f"{host[:80]!r} is neither an IP address nor a host name", rule="printer.host"
            )
        host = host.rstrip(".").lower()
    if not PORT_MIN <= port <= PORT_MAX:
        raise ImplausibleValue(
            "printer_port",
            f"{port} is not a raw printing port (9100 is usual)",
            rule="printer.port",
            allowed={"min": str(PORT_MIN), "max": str(PORT_MAX)},
        )
    return host, port


def send(host: str, port: int, job: bytes, *, timeout_s: float) -> None:
    """Write the job to the printer and close: the printer prints what it received."""
    printer = Network(host=host, port=port, timeout=timeout_s)
    try:
        printer.open()
        printer._raw(job)
    except (DeviceNotFoundError, OSError) as exc:
        raise PrinterUnreachable(f"printer {host}:{port}: {exc}") from exc
    finally:
        printer.close()
