"""Which drivers this daemon can run, by the `driver` key of a `[[devices]]` entry.

Placeholder registry of the foundation; the driver framework (issue 4) fills it, one line a driver.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel


class DriverSpec(Protocol):
    name: str
    Options: type[BaseModel]


DRIVERS: dict[str, DriverSpec] = {}
