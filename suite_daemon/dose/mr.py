"""MR patient exposure from image headers: SAR (0018,1316) W/kg, dB/dt (0018,1318) T/s, B1rms (0018,1320) µT.

Accepts the receiver's image summary (keys `sar`, `db_dt`, `b1rms` as `suite_daemon.dicom.part10`
writes them, or `sar_wkg`, `db_dt_ts`, `b1rms_ut`, or the DICOM keywords `SAR`, `dBdt`,
`B1rms`) or a pydicom Dataset (top level, then the first frame's functional groups).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

_FIELDS = {"sar_wkg": "SAR", "db_dt_ts": "dBdt", "b1rms_ut": "B1rms"}
_RECEIVER_KEYS = {"sar_wkg": "sar", "db_dt_ts": "db_dt", "b1rms_ut": "b1rms"}
"""Keys the DICOM receiver's image summary uses (`suite_daemon.dicom.part10`)."""


@dataclass(frozen=True, slots=True)
class MrExposure:
    sar_wkg: float | None = None
    db_dt_ts: float | None = None
    b1rms_ut: float | None = None

    @property
    def empty(self) -> bool:
        return self.sar_wkg is None and self.db_dt_ts is None and self.b1rms_ut is None


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _from_dataset(ds: Dataset, keyword: str) -> Any:
    if keyword in ds:
        return ds.get(keyword)
    # Enhanced MR: per-frame/shared functional groups hold the values.
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for frame in (ds.get(groups, None) or [])[:1]:
            for element in frame:
                if element.VR == "SQ":
                    for item in element.value:
                        if keyword in item:
                            return item.get(keyword)
    return None


def mr_exposure(source: Mapping[str, Any] | Dataset) -> MrExposure:
    """Values that are missing, not numbers, negative or not finite are None (not measured)."""
    values: dict[str, float | None] = {}
    for field, keyword in _FIELDS.items():
        if isinstance(source, Dataset):
            raw = _from_dataset(source, keyword)
        else:
            raw = next((source[k] for k in (field, _RECEIVER_KEYS[field], keyword) if source.get(k) is not None), None)
        values[field] = _number(raw)
    return MrExposure(**values)
