"""MPPS N-CREATE / N-SET from a pynetdicom SCU."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]  # made at import by pynetdicom

from tests.dicom.dicom_harness import SCP_AE, Running, running_receiver
from tests.dicom.dicom_testdata import ROOT


# The ingest log's first-start segment creation (tens of MB of zeros written and synced) coincided with
# rare 30 s stalls of these tests' answers under load (3 in 26 runs with both cores busy, none in 18 runs
# without the log; cause not found yet, see the issue): these tests, which are not about the log, run
# without it.
@pytest.fixture
async def scp(tmp_path: Path) -> AsyncIterator[Running]:
    async with running_receiver(tmp_path / "state", ingest_log_mb=0) as running:
        yield running


def _create_attrs(study: str) -> Dataset:
    ds = Dataset()
    step = Dataset()
    step.StudyInstanceUID = study
    step.AccessionNumber = "ACC900"
    step.RequestedProcedureID = "RP1"
    step.ScheduledProcedureStepID = "SPS1"
    ds.ScheduledStepAttributesSequence = Sequence([step])
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-1"
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = "XA01"
    ds.PerformedProcedureStepStartDate = "20261122"
    ds.PerformedProcedureStepStartTime = "101500"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.Modality = "XA"
    return ds


def _final(status: str) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20261122"
    ds.PerformedProcedureStepEndTime = "103000"
    ds.ImageAndFluoroscopyAreaDoseProduct = 12.5
    return ds


def _session(port: int, steps: list[tuple[str, str, Dataset]]) -> list[int]:
    """Run N-CREATE / N-SET messages on one association; return their statuses."""
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", port, ae_title=SCP_AE)
    assert assoc.is_established
    statuses = []
    try:
        for action, uid, ds in steps:
            if action == "create":
                status, _ = assoc.send_n_create(ds, ModalityPerformedProcedureStep, uid)
            else:
                status, _ = assoc.send_n_set(ds, ModalityPerformedProcedureStep, uid)
            statuses.append(int(status.Status))
    finally:
        assoc.release()
    return statuses


def _row(scp: Running, uid: str) -> Any:
    with sqlite3.connect(scp.state_dir / "index.sqlite3") as db:
        return db.execute("SELECT status, attributes FROM dicom_mpps WHERE sop_instance_uid = ?", (uid,)).fetchone()


async def test_create_then_complete(scp: Running) -> None:
    uid, study = generate_uid(prefix=ROOT), generate_uid(prefix=ROOT)
    statuses = await asyncio.to_thread(
        _session, scp.port, [("create", uid, _create_attrs(study)), ("set", uid, _final("COMPLETED"))]
    )
    assert statuses == [0x0000, 0x0000]
    created, completed = scp.mpps
    assert (created.action, created.status, created.sop_instance_uid) == ("create", "IN PROGRESS", uid)
    assert (created.study_instance_uid, created.accession_number) == (study, "ACC900")
    assert (completed.action, completed.status) == ("set", "COMPLETED")
    merged = Dataset.from_json(dict(completed.attributes))
    assert merged.PerformedProcedureStepID == "PPS1"  # from the N-CREATE
    assert float(merged.ImageAndFluoroscopyAreaDoseProduct) == 12.5  # from the N-SET
    status, attributes = _row(scp, uid)
    assert status == "COMPLETED" and "PPS1" in attributes


async def test_set_unknown_instance_fails(scp: Running) -> None:
    statuses = await asyncio.to_thread(_session, scp.port, [("set", generate_uid(prefix=ROOT), _final("COMPLETED"))])
    assert statuses == [0x0112]
    assert not scp.mpps
    await scp.wait_for(lambda: bool(scp.alerts))
    assert scp.alerts[0].data["reason"] == "mpps_unknown_instance"
    assert any(r["event"] == "dicom_mpps_failed" and r["status"] == "0x0112" for r in scp.audit)


async def test_set_after_completed_and_duplicate_create_fail(scp: Running) -> None:
    uid, study = generate_uid(prefix=ROOT), generate_uid(prefix=ROOT)
    statuses = await asyncio.to_thread(
        _session,
        scp.port,
        [
            ("create", uid, _create_attrs(study)),
            ("create", uid, _create_attrs(study)),
            ("set", uid, _final("DISCONTINUED")),
            ("set", uid, _final("COMPLETED")),
        ],
    )
    assert statuses == [0x0000, 0x0111, 0x0000, 0x0110]
    assert [m.status for m in scp.mpps] == ["IN PROGRESS", "DISCONTINUED"]
    assert _row(scp, uid)[0] == "DISCONTINUED"


async def test_create_must_be_in_progress(scp: Running) -> None:
    ds = _create_attrs(generate_uid(prefix=ROOT))
    ds.PerformedProcedureStepStatus = "COMPLETED"
    statuses = await asyncio.to_thread(_session, scp.port, [("create", generate_uid(prefix=ROOT), ds)])
    assert statuses == [0x0106]
    assert not scp.mpps


async def test_create_without_uid_gets_one_from_the_scp(scp: Running) -> None:
    def create() -> tuple[int, str | None]:
        answered: list[str] = []

        def on_response(event: Any) -> None:  # the N-CREATE-RSP command set carries the new UID
            uid = event.message.command_set.get("AffectedSOPInstanceUID")
            if uid:
                answered.append(str(uid))

        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context(ModalityPerformedProcedureStep)
        assoc = ae.associate("127.0.0.1", scp.port, ae_title=SCP_AE, evt_handlers=[(evt.EVT_DIMSE_RECV, on_response)])
        assert assoc.is_established
        try:
            status, _ = assoc.send_n_create(_create_attrs(generate_uid(prefix=ROOT)), ModalityPerformedProcedureStep)
            return int(status.Status), answered[0] if answered else None
        finally:
            assoc.release()

    status, uid = await asyncio.to_thread(create)
    assert status == 0 and uid
    assert [m.sop_instance_uid for m in scp.mpps] == [uid]
    assert _row(scp, uid)[0] == "IN PROGRESS"


async def test_create_without_a_status_and_set_to_an_unknown_status_fail(scp: Running) -> None:
    uid, study = generate_uid(prefix=ROOT), generate_uid(prefix=ROOT)
    no_status = _create_attrs(study)
    del no_status.PerformedProcedureStepStatus
    statuses = await asyncio.to_thread(
        _session,
        scp.port,
        [
            ("create", generate_uid(prefix=ROOT), no_status),
            ("create", uid, _create_attrs(study)),
            ("set", uid, _final("PAUSED")),  # not a status of Modality Performed Procedure Step
        ],
    )
    assert statuses == [0x0120, 0x0000, 0x0106]
    assert [m.status for m in scp.mpps] == ["IN PROGRESS"]
    assert _row(scp, uid)[0] == "IN PROGRESS"  # the refused N-SET changed nothing
    await scp.wait_for(lambda: len(scp.alerts) >= 2)
    assert [a.data["reason"] for a in scp.alerts] == ["mpps_missing_status", "mpps_bad_status"]


async def test_an_update_in_progress_is_kept_and_completing_follows(scp: Running) -> None:
    uid, study = generate_uid(prefix=ROOT), generate_uid(prefix=ROOT)
    update = Dataset()
    update.PerformedProcedureStepStatus = "IN PROGRESS"
    update.ImageAndFluoroscopyAreaDoseProduct = 3.5  # a running total sent before the end
    statuses = await asyncio.to_thread(
        _session,
        scp.port,
        [("create", uid, _create_attrs(study)), ("set", uid, update), ("set", uid, _final("COMPLETED"))],
    )
    assert statuses == [0x0000, 0x0000, 0x0000]
    assert [(m.action, m.status) for m in scp.mpps] == [
        ("create", "IN PROGRESS"),
        ("set", "IN PROGRESS"),
        ("set", "COMPLETED"),
    ]
    assert float(Dataset.from_json(dict(scp.mpps[1].attributes)).ImageAndFluoroscopyAreaDoseProduct) == 3.5
    assert _row(scp, uid)[0] == "COMPLETED"
