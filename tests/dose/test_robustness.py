"""Mangled dose and agent SRs: the parsers return a report or raise DoseParseError, nothing else.

pydicom warns about the invalid values written here; that is expected, and kept out of the summary.
"""

from __future__ import annotations

import contextlib
import copy
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from suite_daemon.dose.agent_sr import parse_agent_sr
from suite_daemon.dose.ledger import DoseLedger
from suite_daemon.dose.rdsr import DoseParseError, parse_rdsr
from suite_daemon.simulate.sr_builders import (
    CONTRAST,
    CtEvent,
    InjectionPhase,
    XrayEvent,
    build_agent_sr,
    build_ct_rdsr,
    build_projection_rdsr,
)

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")

PROJECTION = build_projection_rdsr(
    [
        XrayEvent(generate_uid(), "fluoroscopy", 1e-4, 0.01, 3.0, "A", kvp=(70.0, 0.0)),
        XrayEvent(generate_uid(), "acquisition", 2e-4, 0.02, 1.0, "B"),
    ]
)
CT = build_ct_rdsr([CtEvent(generate_uid(), 3.0, 40.0), CtEvent(generate_uid(), 5.0, 60.0)])
AGENT = build_agent_sr([InjectionPhase(generate_uid(), CONTRAST, 50.0, 4.0, 12.5, 700.0)])


def items(ds: Dataset) -> list[Dataset]:
    out = []
    for child in ds.get("ContentSequence", None) or []:
        out.append(child)
        out.extend(items(child))
    return out


def mangle(ds: Dataset, rng: random.Random, operations: int) -> Dataset:
    ds = copy.deepcopy(ds)
    for _ in range(operations):
        all_items = items(ds)
        if not all_items:
            break
        target = rng.choice(all_items)
        op = rng.randrange(8)
        if op == 0 and target.get("ContentSequence"):
            del target.ContentSequence[rng.randrange(len(target.ContentSequence))]
        elif op == 1 and "ConceptNameCodeSequence" in target:
            del target.ConceptNameCodeSequence
        elif op == 2 and "MeasuredValueSequence" in target and target.MeasuredValueSequence:
            target.MeasuredValueSequence[0].NumericValue = rng.choice(["NaN", "1e999", "-3", "", "0"])
        elif op == 3 and "MeasuredValueSequence" in target and target.MeasuredValueSequence:
            target.MeasuredValueSequence[0].MeasurementUnitsCodeSequence = []
        elif op == 4:
            target.ValueType = rng.choice(["NUM", "CODE", "TEXT", "CONTAINER", "UIDREF", ""])
        elif op == 5 and "ConceptCodeSequence" in target:
            target.ConceptCodeSequence = []
        elif op == 6 and "ConceptNameCodeSequence" in target:
            target.ConceptNameCodeSequence[0].CodingSchemeDesignator = rng.choice(["", "99X", "SRT", "dcm"])
        elif op == 7:
            target.ContentSequence = [copy.deepcopy(rng.choice(all_items))]
    return ds


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), operations=st.integers(1, 12), which=st.sampled_from(["projection", "ct"]))
def test_mangled_rdsr_never_crashes(seed: int, operations: int, which: str) -> None:
    ds = mangle(PROJECTION if which == "projection" else CT, random.Random(seed), operations)
    try:
        report = parse_rdsr(ds)
    except DoseParseError:
        return
    ledger = DoseLedger()
    ledger.add_report(report)
    summary = ledger.summary()
    for key in ("dap_total_gym2", "air_kerma_total_gy", "fluoro_time_s", "ctdivol_max_mgy", "dlp_total_mgycm"):
        assert summary[key] is None or summary[key] == summary[key]  # never NaN


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), operations=st.integers(1, 12))
def test_mangled_agent_sr_never_crashes(seed: int, operations: int) -> None:
    ds = mangle(AGENT, random.Random(seed), operations)
    with contextlib.suppress(DoseParseError):
        parse_agent_sr(ds)
