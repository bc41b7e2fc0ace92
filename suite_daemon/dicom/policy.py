"""Who may open an association: calling AE title plus host, checked at A-ASSOCIATE-RQ."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import structlog

from suite_daemon.config.models import AllowedCaller

log = structlog.get_logger()

# (result, source, reason) of A-ASSOCIATE-RJ, PS3.8 Table 9-21
REJECT_CALLING_AE = (0x01, 0x01, 0x03)  # rejected-permanent, service-user, calling-AE-title-not-recognized
REJECT_CALLED_AE = (0x01, 0x01, 0x07)  # rejected-permanent, service-user, called-AE-title-not-recognized
REJECT_BUSY = (0x02, 0x03, 0x02)  # rejected-transient, service-provider (presentation), local-limit-exceeded
REJECT_CHECK_FAILED = (0x02, 0x01, 0x01)  # rejected-transient, service-user, no-reason-given


@dataclass(frozen=True, slots=True)
class Rejection:
    rsd: tuple[int, int, int]
    reason: str


def _addresses(host: str) -> frozenset[str]:
    try:
        return frozenset({str(ipaddress.ip_address(host))})
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        log.warning("dicom_caller_host_unresolved", host=host, error=str(exc))
        return frozenset()
    return frozenset(str(ipaddress.ip_address(info[4][0])) for info in infos)


def _normal(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class CallerPolicy:
    """`allowed_callers` match on calling AE title (`"*"`: any) and host (`"*"`: any; a name is resolved once)."""

    def __init__(self, allowed: list[AllowedCaller], called_ae: str, max_associations: int) -> None:
        self.called_ae = called_ae.strip()
        self.max_associations = max_associations
        self._rules: list[tuple[str, frozenset[str] | None]] = [
            (c.ae_title.strip(), None if c.host == "*" else _addresses(c.host)) for c in allowed
        ]

    def check(self, calling_ae: str, called_ae: str, host: str, active: int) -> Rejection | None:
        """`active`: acceptor associations running now, this one included."""
        calling, called, address = calling_ae.strip(), called_ae.strip(), _normal(host)
        if not any(ae in (calling, "*") and (hosts is None or address in hosts) for ae, hosts in self._rules):
            if any(ae in (calling, "*") for ae, _ in self._rules):
                return Rejection(REJECT_CALLING_AE, "calling AE title not allowed from this host")
            return Rejection(REJECT_CALLING_AE, "calling AE title not allowed")
        if called != self.called_ae:
            return Rejection(REJECT_CALLED_AE, "called AE title is not this receiver's")
        if active > self.max_associations:
            return Rejection(REJECT_BUSY, "too many associations")
        return None
