"""What the supervisor runs: the DICOM receiver, each device, the correlator, the publisher."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from suite_daemon.daemon.context import DaemonContext


class Component(Protocol):
    name: str
    """Unique, used in logs, STATUS= and `component_failed` alerts (e.g. `dicom`, `device:dap1`)."""
    critical: bool
    """The watchdog is only fed while every critical component runs; READY waits for them to start."""

    async def run(self, ctx: DaemonContext, started: Callable[[], None]) -> None:
        """Run until cancelled. Call `started()` once serving (e.g. the SCP listens).

        Raising is a failure: the supervisor logs it, reports it and restarts the component with backoff.
        Cancellation is a clean stop: release everything and re-raise CancelledError.
        """
        ...
