"""The one generic runner that owns all device I/O: a `Component` per configured device.

It opens the port, feeds the driver's session with bytes and clock ticks, writes what the session
wants sent, and turns the session's outputs into pipeline inputs (`DeviceSampled`, `DeviceNoticed`,
`DeviceStatusChanged`) and live telemetry. When the port goes away it reconnects with capped exponential
backoff and jitter. A device never stops the daemon: the component is not critical and catches every
port error itself; a bug in a driver raises, and the supervisor restarts the component.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

import serial
import structlog

from drivers.backoff import Backoff
from drivers.link import Link, LinkLost, PortSettings, open_link
from drivers.registry import DRIVERS
from drivers.session import Health, Notice, Sample, Session
from drivers.spec import DriverSpec
from suite_daemon.config.models import DeviceSection, SuiteConfig
from suite_daemon.events import SCHEMA, DeviceNoticed, DeviceSampled, DeviceStatusChanged, rfc3339, utc_now

if TYPE_CHECKING:
    from suite_daemon.daemon.component import Component
    from suite_daemon.daemon.context import DaemonContext

log = structlog.get_logger("suite_daemon.drivers")

State = Literal["connected", "disconnected", "fault"]


def telemetry_topic(device: str) -> str:
    """Relative to the topic root, as `DaemonContext.publish_live` wants it."""
    return f"device/{device}/telemetry"


def port_settings(device: DeviceSection, spec: DriverSpec) -> PortSettings:
    defaults = spec.serial
    return PortSettings(
        baudrate=device.baudrate or defaults.baudrate,
        bytesize=device.bytesize or defaults.bytesize,
        parity=device.parity or defaults.parity,
        stopbits=device.stopbits or defaults.stopbits,
        rtscts=device.rtscts,
        xonxoff=device.xonxoff,
    )


class DeviceComponent:
    """Runs one `[[devices]]` entry. `started()` is called at once: an absent device never delays READY."""

    critical = False

    def __init__(
        self,
        device: DeviceSection,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utc_now,
        backoff: Backoff | None = None,
    ) -> None:
        self.device = device
        self.spec = DRIVERS[device.driver]
        self.options = self.spec.Options.model_validate(device.options)
        self.name = f"device:{device.name}"
        self.clock = clock
        self.wall_clock = wall_clock
        self.backoff = backoff or Backoff(device.reconnect_min_s, device.reconnect_max_s)
        self.settings = port_settings(device, self.spec)
        self.session: Session = self.spec.new_session(self.options)
        self.state: State | None = None
        self.log = log.bind(device=device.name, driver=device.driver)

    @property
    def counters(self) -> dict[str, int]:
        return self.session.counters.snapshot()

    async def run(self, ctx: DaemonContext, started: Callable[[], None]) -> None:
        started()
        try:
            while True:
                try:
                    link = await open_link(self.device.port, self.settings, self.clock)
                except (OSError, serial.SerialException, ValueError) as exc:
                    self._set_state(ctx, "disconnected", f"cannot open {self.device.port}: {exc}")
                    await asyncio.sleep(self.backoff.next())
                    continue
                try:
                    reason = await self._serve(ctx, link)
                finally:
                    link.close()
                    self.session.disconnected(self.clock())
                self.session.counters.reconnects += 1
                self._set_state(ctx, "disconnected", reason)
                await asyncio.sleep(self.backoff.next())
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                self._set_state(ctx, "disconnected", "daemon stopping")
            raise

    async def _serve(self, ctx: DaemonContext, link: Link) -> str:
        """Pump bytes between the link and the session until the link is lost; return why."""
        self.log.debug("device_port_opened", port=self.device.port)
        session = self.session
        session.connected(self.clock())
        reader: asyncio.Task[tuple[float, bytes]] | None = None
        try:
            while True:
                self._flush(ctx, link)
                deadline = session.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - self.clock())
                if reader is None:
                    reader = asyncio.ensure_future(link.read())
                done, _ = await asyncio.wait({reader}, timeout=timeout)
                if done:
                    try:
                        stamp, data = reader.result()
                    except LinkLost as exc:
                        return f"port lost: {exc}"
                    finally:
                        reader = None
                    session.received(data, stamp)
                session.tick(self.clock())
        finally:
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, LinkLost):
                    await reader

    def _flush(self, ctx: DaemonContext, link: Link) -> None:
        for chunk in self.session.take_outgoing():
            link.write(chunk)
        for output in self.session.take_outputs():
            if isinstance(output, Sample):
                self._sampled(ctx, output)
            elif isinstance(output, Notice):
                self._noticed(ctx, output)
            elif isinstance(output, Health):
                if output.ok:
                    self.backoff.reset()
                self._set_state(ctx, "connected" if output.ok else "fault", output.detail)

    def _wall(self, monotonic: float) -> datetime:
        return self.wall_clock() - timedelta(seconds=max(0.0, self.clock() - monotonic))

    def _sampled(self, ctx: DaemonContext, sample: Sample) -> None:
        host_time = self._wall(sample.time)
        values = dict(sample.values)
        ctx.submit(
            DeviceSampled(
                device=self.device.name,
                driver=self.spec.name,
                kind=sample.kind,
                values=values,
                host_time=host_time,
                device_time=sample.device_time,
                quality=sample.quality,
                segment=sample.segment,
            )
        )
        payload = {
            "schema": SCHEMA,
            "device": self.device.name,
            "driver": self.spec.name,
            "time": rfc3339(host_time),
            "values": values,
        }
        ctx.publish_live(telemetry_topic(self.device.name), payload)

    def _noticed(self, ctx: DaemonContext, notice: Notice) -> None:
        when = self._wall(notice.time)
        data = dict(notice.data)
        if notice.kind == "raw":
            data["first_byte_time"] = rfc3339(when)
        else:
            self.log.info(f"device_{notice.kind}", **{k: v for k, v in data.items() if k != "previous"})
        ctx.submit(DeviceNoticed(self.device.name, self.spec.name, notice.kind, data, time=when))

    def _set_state(self, ctx: DaemonContext, state: State, detail: str) -> None:
        """Report a state change once (a device that stays away is not reported on every retry)."""
        if state == self.state:
            return
        self.state = state
        self.log.info(f"device_{state}", detail=detail)
        ctx.submit(
            DeviceStatusChanged(self.device.name, self.spec.name, state, detail, self.counters, time=self.wall_clock())
        )


def components(config: SuiteConfig) -> list[Component]:
    """A component for every enabled device of the config."""
    return [DeviceComponent(device) for device in config.devices if device.enabled]
