"""A read-only view of an SR content tree, matched by concept code only.

Wraps pydicom content items so parsers ask "the NUM child coded (113722, DCM)" and never look at
positions or display text. Coding scheme aliases are folded; a code meaning that differs from the
standard's (vendor typos) is noted, since matching went by code regardless.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, cast

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sr._concepts_dict import concepts as _standard_concepts

from suite_daemon.dose.codes import EQUIVALENT_CODES, SCHEME_ALIASES, Code
from suite_daemon.dose.units import convert

_SEMANTIC_TAG = re.compile(r"\s*\([a-z ]+\)$")


def _plain(meaning: str) -> str:
    """Lower case, without a SNOMED semantic tag such as " (attribute)"."""
    return _SEMANTIC_TAG.sub("", meaning.strip().lower())


_STANDARD_MEANINGS: dict[Code, set[str]] = {}
_ConceptsByScheme = dict[str, dict[str, dict[str, tuple[str, list[int]]]]]
for _scheme, _by_name in cast(_ConceptsByScheme, _standard_concepts).items():
    if _scheme in ("DCM", "SCT"):
        for _codes in _by_name.values():
            for _value, (_meaning, _cids) in _codes.items():
                _STANDARD_MEANINGS.setdefault((_value, _scheme), set()).add(_plain(_meaning))


# Tags of the SR content item attributes read here.
_CODE_VALUE = 0x00080100
_LONG_CODE_VALUE = 0x00080119
_CODING_SCHEME = 0x00080102
_CODE_MEANING = 0x00080104
_CONCEPT_NAME_SEQ = 0x0040A043
_VALUE_TYPE = 0x0040A040
_CONTENT_SEQ = 0x0040A730
_MEASURED_VALUE_SEQ = 0x0040A300
_NUMERIC_VALUE = 0x0040A30A
_UNITS_SEQ = 0x004008EA
_CONCEPT_CODE_SEQ = 0x0040A168
_TEXT_VALUE = 0x0040A160
_UID = 0x0040A124
_DATETIME = 0x0040A120


def _get(ds: Dataset, tag: int, default: Any = None) -> Any:
    """An element's value by tag: much faster than keyword access on large content trees."""
    if tag not in ds:
        return default
    value = ds[tag].value
    return default if value is None else value


def code_of(item: Dataset | None) -> Code | None:
    """`(CodeValue, CodingSchemeDesignator)` of a code sequence item, aliases folded."""
    if item is None:
        return None
    value = str(_get(item, _CODE_VALUE, "") or _get(item, _LONG_CODE_VALUE, "") or "").strip()
    scheme = str(_get(item, _CODING_SCHEME, "") or "").strip().upper()
    if not value:
        return None
    scheme = SCHEME_ALIASES.get(scheme, scheme)
    code = (value, scheme)
    return EQUIVALENT_CODES.get(code, code)


def _first(seq: Any) -> Dataset | None:
    try:
        return seq[0] if seq else None
    except (TypeError, IndexError):
        return None


@dataclass
class Repairs:
    """Collects repair notes for one parsed object, without duplicates, in order."""

    notes: list[str] = field(default_factory=list)

    def add(self, note: str | None) -> None:
        if note and note not in self.notes:
            self.notes.append(note)


class Node:
    """One content item. Its code and children are computed once (large RDSRs hold thousands)."""

    def __init__(self, item: Dataset, repairs: Repairs) -> None:
        self.item = item
        self.repairs = repairs
        self._meaning_checked = False

    @cached_property
    def code(self) -> Code | None:
        return code_of(_first(_get(self.item, _CONCEPT_NAME_SEQ)))

    @cached_property
    def value_type(self) -> str:
        return str(_get(self.item, _VALUE_TYPE, "") or "").upper()

    @cached_property
    def children(self) -> list[Node]:
        seq = _get(self.item, _CONTENT_SEQ)
        return [Node(child, self.repairs) for child in (seq or [])]

    def check_meaning(self) -> None:
        if self._meaning_checked:
            return
        self._meaning_checked = True
        concept = _first(_get(self.item, _CONCEPT_NAME_SEQ))
        code = self.code
        if concept is None or code is None:
            return
        standard = _STANDARD_MEANINGS.get(code)
        sent = str(_get(concept, _CODE_MEANING, "") or "")
        if standard and sent and _plain(sent) not in standard:
            expected = " / ".join(sorted(standard))
            self.repairs.add(f"code meaning {sent!r} of {code} differs from the standard {expected!r}; matched by code")

    # --- navigation -------------------------------------------------------------------------
    def find(self, code: Code) -> list[Node]:
        """Direct children with this concept name."""
        found = [c for c in self.children if c.code == code]
        for c in found:
            c.check_meaning()
        return found

    def first(self, code: Code) -> Node | None:
        found = self.find(code)
        return found[0] if found else None

    def descendants(self, code: Code, stop: frozenset[Code] = frozenset()) -> Iterator[Node]:
        """Depth-first, not entering containers whose code is in `stop` (nested events, phases)."""
        for child in self.children:
            if child.code == code:
                child.check_meaning()
                yield child
            if child.code not in stop and child.code != code:
                yield from child.descendants(code, stop)

    def first_descendant(self, code: Code, stop: frozenset[Code] = frozenset()) -> Node | None:
        return next(self.descendants(code, stop), None)

    # --- values -------------------------------------------------------------------------------
    def numbers(self) -> list[tuple[float, str | None, str | None]]:
        """All numeric values of a NUM item: [(value, unit code, unit scheme)], multi-valued kept apart."""
        mvs = _first(_get(self.item, _MEASURED_VALUE_SEQ))
        if mvs is None:
            return []
        raw = _get(mvs, _NUMERIC_VALUE)
        if raw is None or raw == "":
            return []
        values = list(raw) if isinstance(raw, (MultiValue, list, tuple)) else [raw]
        units = _first(_get(mvs, _UNITS_SEQ))
        unit = str(_get(units, _CODE_VALUE, "")) if units is not None else None
        scheme = str(_get(units, _CODING_SCHEME, "")) if units is not None else None
        out: list[tuple[float, str | None, str | None]] = []
        for v in values:
            try:
                number = float(v)
            except (TypeError, ValueError):
                number = math.nan
            if not math.isfinite(number):
                self.repairs.add(f"{self.code}: numeric value {v!r} is not a finite number; ignored")
                continue
            out.append((number, unit, scheme))
        return out

    def values_in(self, quantity: str) -> list[float]:
        """Every numeric value of this item, converted into the quantity's canonical unit."""
        out: list[float] = []
        nums = self.numbers()
        if not nums:
            self.repairs.add(f"{self.code}: empty numeric item ignored")
        for value, unit, scheme in nums:
            converted = convert(value, unit, quantity, scheme, what=str(self.code))
            self.repairs.add(converted.repair)
            if converted.value is not None:
                out.append(converted.value)
        return out

    def value_in(self, quantity: str) -> float | None:
        values = self.values_in(quantity)
        return values[0] if values else None

    @property
    def code_value(self) -> Code | None:
        return code_of(_first(_get(self.item, _CONCEPT_CODE_SEQ)))

    @property
    def code_meaning(self) -> str | None:
        concept = _first(_get(self.item, _CONCEPT_CODE_SEQ))
        return str(_get(concept, _CODE_MEANING, "")) or None if concept is not None else None

    @property
    def text(self) -> str | None:
        value = _get(self.item, _TEXT_VALUE)
        return str(value).strip() or None if value is not None else None

    @property
    def uid(self) -> str | None:
        value = _get(self.item, _UID)
        return str(value).strip() or None if value is not None else None

    @property
    def datetime(self) -> str | None:
        value = _get(self.item, _DATETIME)
        return str(value).strip() or None if value is not None else None


def child_value(node: Node | None, code: Code, quantity: str, stop: frozenset[Code] = frozenset()) -> float | None:
    """The first usable value of the first descendant coded `code`, in the quantity's unit."""
    if node is None:
        return None
    # Every match is read (not just the first) so empty or broken duplicates are noted as repairs.
    values = [found.value_in(quantity) for found in node.descendants(code, stop)]
    return next((v for v in values if v is not None), None)


def child_values(node: Node | None, code: Code, quantity: str, stop: frozenset[Code] = frozenset()) -> list[float]:
    """All values of every descendant coded `code` (multi-valued and repeated items together)."""
    if node is None:
        return []
    out: list[float] = []
    for found in node.descendants(code, stop):
        out.extend(found.values_in(quantity))
    return out
