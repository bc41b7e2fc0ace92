"""UCUM unit conversion into the contract's units, with the repairs vendors' units need.

The standard's templates fix one unit per quantity (DAP Gy.m2, dose Gy, DLP mGy.cm, CTDIvol mGy,
times s...). Vendors send others (`dGy.cm2`, `mGy`), or spell UCUM wrong (`Gym2`, `mGycm`). A value is
converted when its unit is known for that quantity; every departure from the template's unit is
reported as a repair string. An unknown unit makes the value unusable (None plus a repair): a dose
is never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# quantity -> (canonical UCUM unit, {accepted UCUM unit: factor into the canonical unit})
QUANTITIES: dict[str, tuple[str, dict[str, float]]] = {
    "dap": (
        "Gy.m2",
        {
            "Gy.m2": 1.0,
            "dGy.m2": 1e-1,
            "cGy.m2": 1e-2,
            "mGy.m2": 1e-3,
            "uGy.m2": 1e-6,
            "Gy.dm2": 1e-2,
            "Gy.cm2": 1e-4,
            "dGy.cm2": 1e-5,
            "cGy.cm2": 1e-6,
            "mGy.cm2": 1e-7,
            "uGy.cm2": 1e-10,
        },
    ),
    "dose": ("Gy", {"Gy": 1.0, "dGy": 1e-1, "cGy": 1e-2, "mGy": 1e-3, "uGy": 1e-6}),
    "ct_dose": ("mGy", {"mGy": 1.0, "Gy": 1e3, "cGy": 10.0, "uGy": 1e-3}),
    "dlp": ("mGy.cm", {"mGy.cm": 1.0, "Gy.cm": 1e3, "mGy.mm": 0.1, "mGy.m": 100.0, "cGy.cm": 10.0}),
    "time": ("s", {"s": 1.0, "ms": 1e-3, "us": 1e-6, "min": 60.0, "h": 3600.0}),
    "time_ms": ("ms", {"ms": 1.0, "s": 1e3, "us": 1e-3}),
    "kv": ("kV", {"kV": 1.0, "V": 1e-3}),
    "current": ("mA", {"mA": 1.0, "uA": 1e-3, "A": 1e3}),
    "volume": ("ml", {"ml": 1.0, "mL": 1.0, "cm3": 1.0, "l": 1e3, "L": 1e3, "ul": 1e-3, "uL": 1e-3}),
    "flow": (
        "ml/s",
        {
            "ml/s": 1.0,
            "mL/s": 1.0,
            "cm3/s": 1.0,
            "ml/min": 1 / 60,
            "mL/min": 1 / 60,
            "ml/h": 1 / 3600,
            "mL/h": 1 / 3600,
        },
    ),
    "pressure": (
        "kPa",
        {
            "kPa": 1.0,
            "Pa": 1e-3,
            "MPa": 1e3,
            "bar": 100.0,
            "mbar": 0.1,
            "[psi]": 6.894757293168361,
            "mm[Hg]": 0.133322387415,
        },
    ),
    "count": ("1", {"1": 1.0, "{events}": 1.0, "{frames}": 1.0, "{pulses}": 1.0, "{X-Ray pulses}": 1.0}),
    "rate": ("/s", {"/s": 1.0, "{pulse}/s": 1.0, "{pulses}/s": 1.0, "Hz": 1.0}),
}

# Frequent non-UCUM spellings, read as the UCUM unit they obviously mean.
_SPELLINGS: dict[str, str] = {
    "gym2": "Gy.m2",
    "gycm2": "Gy.cm2",
    "dgycm2": "dGy.cm2",
    "cgycm2": "cGy.cm2",
    "mgycm2": "mGy.cm2",
    "ugycm2": "uGy.cm2",
    "mgycm": "mGy.cm",
    "gycm": "Gy.cm",
    "mgy": "mGy",
    "gy": "Gy",
    "dgy": "dGy",
    "cgy": "cGy",
    "ugy": "uGy",
    "sec": "s",
    "secs": "s",
    "seconds": "s",
    "msec": "ms",
    "kvp": "kV",
    "kv": "kV",
    "ma": "mA",
    "psi": "[psi]",
    "mmhg": "mm[Hg]",
    "ml/sec": "ml/s",
    "cc": "ml",
    "cc/s": "ml/s",
}


@dataclass(frozen=True, slots=True)
class Converted:
    value: float | None
    repair: str | None = None


def _normalise(unit: str) -> str:
    """Spelling variants of one unit mapped together: `Gy·m²`, `Gy*m^2`, `Gy m2` -> `Gy.m2`."""
    u = unit.strip().replace("·", ".").replace("*", ".").replace("²", "2").replace("^", "").replace("µ", "u")
    u = re.sub(r"\s+", ".", u)
    return u


def convert(value: float, unit: str | None, quantity: str, scheme: str | None = "UCUM", what: str = "") -> Converted:
    """`value` in `unit` as the quantity's canonical unit. `what` names the item in repair messages."""
    canonical, factors = QUANTITIES[quantity]
    label = f"{what}: " if what else ""
    if unit is None or not unit.strip():
        return Converted(value, f"{label}no unit given; read as {canonical}")
    notes: list[str] = []
    if scheme is not None and scheme.strip().upper() != "UCUM":
        notes.append(f"unit coding scheme {scheme!r} is not UCUM")
    resolved = unit if unit in factors else _normalise(unit)
    if resolved not in factors:
        resolved = _SPELLINGS.get(resolved.replace(".", "").lower(), resolved)
    if resolved not in factors:
        # Case slips such as "GY.M2"; compare case-insensitively only as a last resort.
        by_lower = {k.lower(): k for k in factors}
        resolved = by_lower.get(_normalise(unit).lower(), resolved)
    if resolved not in factors:
        return Converted(None, f"{label}unit {unit!r} is not a known unit of {quantity}; value {value} ignored")
    if resolved != unit:
        notes.append(f"unit {unit!r} read as UCUM {resolved!r}")
    factor = factors[resolved]
    converted = value * factor
    if resolved != canonical and factor != 1.0:
        notes.append(f"converted {value} {resolved} to {converted:.6g} {canonical}")
    return Converted(converted, (label + "; ".join(notes)) if notes else None)
