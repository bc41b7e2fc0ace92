"""The modality's clock against the daemon's: offset = modality date-time − daemon receive time.

DICOM date-times are kept as sent; those without a zone offset are read as UTC, so the estimate
includes the modality's time-zone difference (a report adds the offset to put both on one axis).
The estimate is the median of the last `KEEP` observations, robust to an object re-sent late.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

KEEP = 51


def modality_time(summary: Mapping[str, Any]) -> datetime | None:
    """The object's acquisition date-time, else its content date-time (ISO text from the receiver)."""
    for key in ("acquisition_datetime", "content_datetime"):
        text = summary.get(key)
        if not isinstance(text, str) or "T" not in text:
            continue
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            continue
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def observe(offsets: list[float], summary: Mapping[str, Any], received_at: datetime) -> float | None:
    """Add this object's offset (if it has a date-time) to `offsets`; return the object's own offset."""
    sent = modality_time(summary)
    if sent is None:
        return None
    offset = round((sent - received_at).total_seconds(), 3)
    offsets.append(offset)
    del offsets[:-KEEP]
    return offset


def estimate(offsets: list[float]) -> float | None:
    return round(statistics.median(offsets), 3) if offsets else None
