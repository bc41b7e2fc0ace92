"""The simulated modality against a pynetdicom SCP started here (real associations over loopback)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]  # made at import by pynetdicom

from suite_daemon.config import SuiteConfig
from suite_daemon.dose.agent_sr import parse_agent_sr
from suite_daemon.dose.injection_ledger import InjectionLedger
from suite_daemon.dose.ledger import DoseLedger
from suite_daemon.dose.mpps import parse_mpps
from suite_daemon.dose.rdsr import parse_rdsr
from suite_daemon.simulate.images import CT_IMAGE_STORAGE
from suite_daemon.simulate.modality import SCENARIOS, ModalityError, run_modality
from suite_daemon.simulate.sr_builders import PERFORMED_AGENT_SR, XRAY_DOSE_SR


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    stored: list[Dataset] = field(default_factory=list)
    callers: set[str] = field(default_factory=set)
    mpps: list[tuple[str, str, Dataset]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def scp() -> Iterator[tuple[int, Received]]:
    got = Received()
    mpps_state: dict[str, Dataset] = {}

    def on_store(event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        with got.lock:
            got.stored.append(ds)
            got.callers.add(event.assoc.requestor.ae_title)
        return 0x0000

    def on_create(event: Any) -> tuple[int, Dataset]:
        ds = event.attribute_list
        uid = event.request.AffectedSOPInstanceUID
        mpps_state[uid] = ds
        with got.lock:
            got.mpps.append(("create", uid, ds))
        return 0x0000, ds

    def on_set(event: Any) -> tuple[int, Dataset | None]:
        uid = event.request.RequestedSOPInstanceUID
        if uid not in mpps_state:
            return 0x0112, None
        mod = event.modification_list
        with got.lock:
            got.mpps.append(("set", uid, mod))
        return 0x0000, mod

    ae = AE(ae_title="SUITE_SCP")
    for sop_class in (CT_IMAGE_STORAGE, XRAY_DOSE_SR, PERFORMED_AGENT_SR):
        ae.add_supported_context(sop_class)
    ae.add_supported_context(ModalityPerformedProcedureStep)
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port),
        block=False,
        evt_handlers=[(evt.EVT_C_STORE, on_store), (evt.EVT_N_CREATE, on_create), (evt.EVT_N_SET, on_set)],
    )
    assert server is not None  # block=False: the server runs in its own thread
    try:
        yield port, got
    finally:
        server.shutdown()


def config_for(tmp_path: Path, port: int, callers: list[dict[str, str]] | None = None) -> SuiteConfig:
    return SuiteConfig.model_validate(
        {
            "suite": {"id": "test", "state_dir": str(tmp_path)},
            "dicom": {
                "port": port,
                "ae_title": "SUITE_SCP",
                "allowed_callers": callers if callers is not None else [{"ae_title": "CT01"}],
            },
        }
    )


async def test_quick_scenario_plays_one_procedure(tmp_path: Path, scp: tuple[int, Received]) -> None:
    port, got = scp
    await asyncio.wait_for(run_modality(config_for(tmp_path, port), "quick", asyncio.Event()), timeout=60)
    plan = SCENARIOS["quick"]
    want = plan.expected()
    assert got.callers == {"CT01"}
    assert [m[0] for m in got.mpps] == ["create", "set"]
    create, final = got.mpps[0][2], got.mpps[1][2]
    assert create.PerformedProcedureStepStatus == "IN PROGRESS"
    assert final.PerformedProcedureStepStatus == "COMPLETED"
    study_uid = create.ScheduledStepAttributesSequence[0].StudyInstanceUID

    by_class: dict[str, list[Dataset]] = {}
    for ds in got.stored:
        by_class.setdefault(ds.SOPClassUID, []).append(ds)
        assert ds.StudyInstanceUID == study_uid
    images = by_class[CT_IMAGE_STORAGE]
    assert len(images) == want["images"] and images[0].Rows == 64
    assert len(by_class[PERFORMED_AGENT_SR]) == 1
    rdsrs = by_class[XRAY_DOSE_SR]
    assert len(rdsrs) >= 3  # growing reports plus an older partial one re-sent

    dose = DoseLedger()
    for ds in rdsrs:
        dose.add_report(parse_rdsr(ds))
    summary = dose.summary()
    assert summary["irradiation_events"] == want["irradiation_events"]
    assert summary["ctdivol_max_mgy"] == want["ctdivol_max_mgy"]
    assert summary["dlp_total_mgycm"] == pytest.approx(want["dlp_total_mgycm"], rel=1e-12)
    mpps_dose = parse_mpps(final, sop_instance_uid=got.mpps[1][1])
    assert mpps_dose is not None and mpps_dose.ctdivol_max_mgy == want["ctdivol_max_mgy"]

    injection = InjectionLedger()
    injection.add_report(parse_agent_sr(by_class[PERFORMED_AGENT_SR][0]))
    s = injection.summary()
    assert (s["volume_total_ml"], s["peak_flow_mlps"], s["peak_pressure_kpa"], s["phases"]) == (
        want["volume_total_ml"],
        want["peak_flow_mlps"],
        want["peak_pressure_kpa"],
        want["phases"],
    )


async def test_stop_discontinues_the_step(tmp_path: Path, scp: tuple[int, Received]) -> None:
    port, got = scp
    stop = asyncio.Event()
    task = asyncio.create_task(run_modality(config_for(tmp_path, port), "default", stop))
    for _ in range(200):
        await asyncio.sleep(0.05)
        if got.mpps:
            break
    stop.set()
    await asyncio.wait_for(task, timeout=30)
    assert [m[0] for m in got.mpps] == ["create", "set"]
    assert got.mpps[1][2].PerformedProcedureStepStatus == "DISCONTINUED"


async def test_refused_association_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port()  # nobody listens
    with pytest.raises(ModalityError, match="MPPS N-CREATE: association"):
        await asyncio.wait_for(run_modality(config_for(tmp_path, port, []), "quick", asyncio.Event()), timeout=60)


async def test_injector_alarm_scenario_and_unknown_names(tmp_path: Path, scp: tuple[int, Received]) -> None:
    port, got = scp
    config = config_for(tmp_path, port)
    await asyncio.wait_for(run_modality(config, "injector-alarm", asyncio.Event(), step_s=0), timeout=60)
    agent = [ds for ds in got.stored if ds.SOPClassUID == PERFORMED_AGENT_SR]
    report = parse_agent_sr(agent[0])
    assert [(f.kind, f.level) for f in report.flags] == [("terminated_pressure_limit", "critical")]
    # a device-fault scenario name of drivers.simulate plays the default procedure
    await asyncio.wait_for(run_modality(config, "unplug", asyncio.Event(), step_s=0), timeout=60)
    assert [m[0] for m in got.mpps] == ["create", "set", "create", "set"]
