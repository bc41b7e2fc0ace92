"""Links: byte I/O only. A link delivers chunks stamped with the host monotonic clock, and `LinkLost`.

- `AsyncSerialLink` (pyserial-asyncio-fast): device paths, pseudo-terminals and `socket://HOST:PORT`
  (a raw TCP connection, as to a ser2net-style terminal server).
- `ThreadSerialLink`: pyserial in a thread, for URLs the asyncio layer cannot poll (`loop://`,
  `rfc2217://`, `spy://`, `alt://`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import serial
import serial_asyncio_fast

THREADED_SCHEMES = frozenset({"loop", "rfc2217", "spy", "alt", "hwgrep"})

Clock = Callable[[], float]


class LinkLost(ConnectionError):
    """The port went away (unplugged, peer closed, I/O error)."""


@dataclass(frozen=True, slots=True)
class PortSettings:
    baudrate: int
    bytesize: int
    parity: str
    stopbits: float
    rtscts: bool = False
    xonxoff: bool = False

    def kwargs(self) -> dict[str, Any]:
        return {
            "baudrate": self.baudrate,
            "bytesize": self.bytesize,
            "parity": self.parity,
            "stopbits": self.stopbits,
            "rtscts": self.rtscts,
            "xonxoff": self.xonxoff,
        }


class Link(ABC):
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._chunks: asyncio.Queue[tuple[float, bytes] | BaseException] = asyncio.Queue()
        self._lost: BaseException | None = None

    async def read(self) -> tuple[float, bytes]:
        """The next chunk and the host time it arrived. Raises LinkLost once the port is gone."""
        if self._lost is not None:
            raise LinkLost(str(self._lost)) from self._lost
        item = await self._chunks.get()
        if isinstance(item, BaseException):
            self._lost = item
            raise LinkLost(str(item) or type(item).__name__) from item
        return item

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def _deliver(self, data: bytes) -> None:
        self._chunks.put_nowait((self.clock(), data))

    def _lose(self, exc: BaseException | None) -> None:
        self._chunks.put_nowait(exc if exc is not None else LinkLost("closed by the other end"))


class _Protocol(asyncio.Protocol):
    def __init__(self, link: AsyncSerialLink) -> None:
        self.link = link

    def data_received(self, data: bytes) -> None:
        self.link._deliver(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.link._lose(exc)


class AsyncSerialLink(Link):
    transport: asyncio.BaseTransport

    @classmethod
    async def open(cls, url: str, settings: PortSettings, clock: Clock = time.monotonic) -> AsyncSerialLink:
        link = cls(clock)
        loop = asyncio.get_running_loop()
        link.transport, _ = await serial_asyncio_fast.create_serial_connection(
            loop, lambda: _Protocol(link), url, **settings.kwargs()
        )
        return link

    def write(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.transport.close()


class ThreadSerialLink(Link):
    """pyserial's blocking API in a reader thread; writes are small and go straight out."""

    def __init__(self, clock: Clock, port: serial.SerialBase, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(clock)
        self.port = port
        self.loop = loop
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._reader, name=f"serial-{port.port}", daemon=True)
        self._thread.start()

    @classmethod
    async def open(cls, url: str, settings: PortSettings, clock: Clock = time.monotonic) -> ThreadSerialLink:
        loop = asyncio.get_running_loop()
        port = await loop.run_in_executor(None, lambda: serial.serial_for_url(url, timeout=0.1, **settings.kwargs()))
        return cls(clock, port, loop)

    def _reader(self) -> None:
        try:
            while not self._closing.is_set():
                data = self.port.read(max(1, self.port.in_waiting))
                if data:
                    stamp = self.clock()
                    self.loop.call_soon_threadsafe(self._chunks.put_nowait, (stamp, data))
        except Exception as exc:  # any pyserial failure means the port is gone
            if not self._closing.is_set():
                self.loop.call_soon_threadsafe(self._lose, exc)

    def write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except serial.SerialException as exc:
            self._lose(exc)

    def close(self) -> None:
        # No join: the reader wakes within its 0.1 s read timeout, sees the flag and ends on its own,
        # so closing never blocks the event loop.
        self._closing.set()
        self.port.close()


async def open_link(url: str, settings: PortSettings, clock: Clock = time.monotonic) -> Link:
    """Open `url` (a device path or a pyserial URL). Raises OSError / serial.SerialException if it cannot."""
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme in THREADED_SCHEMES:
        return await ThreadSerialLink.open(url, settings, clock)
    return await AsyncSerialLink.open(url, settings, clock)
