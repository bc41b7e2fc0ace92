"""Which drivers this daemon can run, by the `driver` key of a `[[devices]]` entry.

Every driver that can run in a hospital is listed here, one line each. Adding a driver is adding its
package under `drivers/` and one line below (see docs/drivers.md).
"""

from __future__ import annotations

from drivers import alaris_asena, newera_pump, ptw_diamentor, recorder
from drivers.spec import DriverSpec

DRIVERS: dict[str, DriverSpec] = {
    spec.name: spec
    for spec in (
        ptw_diamentor.SPEC,
        newera_pump.SPEC,
        alaris_asena.SPEC,
        recorder.SPEC,
    )
}
