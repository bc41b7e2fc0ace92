"""The systemd notify protocol, written directly to `$NOTIFY_SOCKET` (a no-op without systemd)."""

from __future__ import annotations

import os
import socket

import structlog

log = structlog.get_logger(__name__)


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None = None
        self._socket: socket.socket | None = None
        if address:
            # '@' marks a Linux abstract socket: the name starts with a NUL byte.
            self._address = b"\0" + address[1:].encode() if address.startswith("@") else address
            # Non-blocking: a notify socket nobody reads must never stall the event loop.
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def notify(self, **fields: str | int) -> None:
        if self._socket is None or self._address is None:
            return
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items()).encode()
        try:
            self._socket.sendto(message, self._address)
        except BlockingIOError:
            log.warning("sd_notify_dropped", message=message.decode(), reason="notify socket full")
        except OSError as exc:
            log.warning("sd_notify_failed", error=str(exc))

    def ready(self, status: str) -> None:
        self.notify(ready=1, status=status)

    def status(self, status: str) -> None:
        self.notify(status=status)

    def stopping(self, status: str = "stopping") -> None:
        self.notify(stopping=1, status=status)

    def watchdog(self) -> None:
        self.notify(watchdog=1)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def watchdog_interval_s() -> float | None:
    """Half of `$WATCHDOG_USEC` when the watchdog is meant for this process, else None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2 / 1_000_000
    except ValueError:
        return None
