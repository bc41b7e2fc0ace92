"""`suite-daemon` with the device components wired in, for end-to-end tests.

Until `suite_daemon.daemon.wiring.build_components` runs `drivers.runner.components(config)` itself, this
launcher adds them; once it does, it changes nothing. Usage: `python -m tests.drivers.daemon_with_devices run
--config PATH` (same arguments as `suite-daemon`).
"""

from __future__ import annotations

import sys

from drivers.runner import components
from suite_daemon import cli
from suite_daemon.config import SuiteConfig
from suite_daemon.daemon import wiring
from suite_daemon.daemon.component import Component

_lead_build = wiring.build_components


def build_components(config: SuiteConfig) -> list[Component]:
    built = _lead_build(config)
    if not any(c.name.startswith("device:") for c in built):
        built = [*built, *components(config)]
    return built


if __name__ == "__main__":
    wiring.build_components = build_components  # type: ignore[assignment]
    sys.exit(cli.main(sys.argv[1:]))
