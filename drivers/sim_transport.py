"""Serve a simulator's device side on a pseudo-terminal or a TCP port, with unplug and replug.

A `PtyDevice` creates a pty pair in raw mode, keeps the slave open (so the master never sees a hangup
while the driver reconnects) and, given a path, points a symlink there at the slave. `unplug()` closes
both ends, exactly what pulling a USB serial adapter does to the driver's open port; `replug()` makes a
new pair and re-points the symlink.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import tty
from collections.abc import Callable
from pathlib import Path

from drivers.simulator import Simulator

Clock = Callable[[], float]


class PtyDevice:
    def __init__(
        self, simulator: Simulator, path: Path | None = None, *, clock: Clock = time.monotonic, tick_s: float = 0.05
    ) -> None:
        self.simulator = simulator
        self.path = path
        self.clock = clock
        self.tick_s = tick_s
        self.dropped = 0
        self._master: int | None = None
        self._slave: int | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.slave_path = ""

    async def start(self) -> None:
        self._open()
        self._ticker = asyncio.create_task(self._tick())

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def _open(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.slave_path = os.ttyname(slave)
        if self.path is not None:
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.slave_path)
            os.replace(tmp, self.path)  # atomic: replaces a stale symlink from an earlier run
        asyncio.get_running_loop().add_reader(master, self._readable)

    def _readable(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError:
            return
        self.write(self.simulator.feed(data, self.clock()))

    def write(self, data: bytes) -> None:
        if not data or self._master is None:
            return
        try:
            os.write(self._master, data)
        except (BlockingIOError, OSError):
            self.dropped += len(data)  # nobody reads the port: a real device's output is lost too

    async def _tick(self) -> None:
        while True:
            self.write(self.simulator.tick(self.clock()))
            await asyncio.sleep(self.tick_s)

    def unplug(self) -> None:
        if self._master is None:
            return
        asyncio.get_running_loop().remove_reader(self._master)
        os.close(self._master)
        if self._slave is not None:
            os.close(self._slave)
        self._master = self._slave = None

    def replug(self) -> None:
        if self._master is None:
            self._open()

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self.unplug()
        if self.path is not None and self.path.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


class TcpDevice:
    """The device side behind a TCP port, as a ser2net terminal server would expose it. One client at a time."""

    def __init__(
        self, simulator: Simulator, host: str, port: int, *, clock: Clock = time.monotonic, tick_s: float = 0.05
    ) -> None:
        self.simulator = simulator
        self.host = host
        self.port = port
        self.clock = clock
        self.tick_s = tick_s
        self._server: asyncio.Server | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.replug_async()
        self._ticker = asyncio.create_task(self._tick())

    @property
    def plugged(self) -> bool:
        return self._server is not None

    async def replug_async(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._client, self.host, self.port, reuse_address=True)
            if self.port == 0:
                self.port = self._server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = writer
        try:
            while data := await reader.read(4096):
                self.write(self.simulator.feed(data, self.clock()))
        except (ConnectionError, OSError):
            pass
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()

    def write(self, data: bytes) -> None:
        if data and self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)

    async def _tick(self) -> None:
        while True:
            self.write(self.simulator.tick(self.clock()))
            await asyncio.sleep(self.tick_s)

    async def unplug_async(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await self.unplug_async()
