"""Configured alert levels (`[alerts]`) checked against a procedure's running totals.

Each level of each quantity fires once per procedure. Levels of one quantity are graded from the
top: the highest is `critical`, the one below `warning`, any lower ones `notice`; a single level
is a `warning`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from suite_daemon.config.models import AlertsSection


@dataclass(frozen=True, slots=True)
class Crossing:
    key: str
    """Identifies the level within the procedure (fires once)."""
    level: str
    kind: str
    message: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Quantity:
    config_key: str
    kind: str
    label: str
    unit: str
    read: Callable[[Mapping[str, Any]], float | None]


def _scaled(section: str, key: str, factor: float) -> Callable[[Mapping[str, Any]], float | None]:
    def read(summary: Mapping[str, Any]) -> float | None:
        value = summary.get(section, {}).get(key)
        return None if value is None else value * factor

    return read


QUANTITIES = (
    Quantity(
        "air_kerma_mgy", "air_kerma", "reference-point air kerma", "mGy", _scaled("dose", "air_kerma_total_gy", 1e3)
    ),
    Quantity("dap_gycm2", "dap", "dose-area product", "Gy·cm²", _scaled("dose", "dap_total_gym2", 1e4)),
    Quantity("ctdivol_mgy", "ctdivol", "CTDIvol", "mGy", _scaled("dose", "ctdivol_max_mgy", 1.0)),
    Quantity("dlp_mgycm", "dlp", "DLP", "mGy·cm", _scaled("dose", "dlp_total_mgycm", 1.0)),
    Quantity("fluoro_time_s", "fluoro_time", "fluoroscopy time", "s", _scaled("dose", "fluoro_time_s", 1.0)),
    Quantity("sar_wkg", "sar", "SAR", "W/kg", _scaled("dose", "sar_max_wkg", 1.0)),
    Quantity(
        "injection_pressure_kpa",
        "injection_pressure",
        "injection peak pressure",
        "kPa",
        _scaled("injection", "peak_pressure_kpa", 1.0),
    ),
    Quantity(
        "injection_volume_ml", "injection_volume", "injected volume", "mL", _scaled("injection", "volume_total_ml", 1.0)
    ),
)


def grade(index: int, count: int) -> str:
    from_top = count - 1 - index
    if count == 1:
        return "warning"
    return "critical" if from_top == 0 else "warning" if from_top == 1 else "notice"


def crossings(alerts: AlertsSection, summary: Mapping[str, Any], fired: set[str]) -> list[Crossing]:
    """Levels reached by the totals in `summary` that have not fired yet (the caller adds their keys)."""
    found: list[Crossing] = []
    for q in QUANTITIES:
        levels: list[float] = getattr(alerts, q.config_key)
        value = q.read(summary) if levels else None
        if value is None:
            continue
        for index, threshold in enumerate(levels):
            key = f"{q.kind}:{threshold:g}"
            if value < threshold or key in fired:
                continue
            found.append(
                Crossing(
                    key,
                    grade(index, len(levels)),
                    f"{q.kind}_threshold",
                    f"{q.label} {value:.6g} {q.unit} reached the {threshold:g} {q.unit} level",
                    {
                        "quantity": q.config_key,
                        "value": value,
                        "threshold": threshold,
                        "unit": q.unit,
                        "level_index": index,
                    },
                )
            )
    return found
