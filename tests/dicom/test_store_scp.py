"""C-ECHO and C-STORE from real peers (DCMTK echoscu/storescu, pynetdicom) against the receiver."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import UID, CTImageStorage, MRImageStorage

from tests.dicom.dicom_harness import SCP_AE, Running, pynetdicom_store, run_tool
from tests.dicom.dicom_testdata import (
    BIRTH_DATE,
    ENHANCED_XRAY_DOSE_SR,
    PATIENT_ID,
    PATIENT_NAME,
    PERFORMED_AGENT_SR,
    ct_slice,
    dataset_bytes,
    dose_sr,
    mr_image,
    new_study,
    save,
    small_object,
    xa_run,
)

pytestmark = pytest.mark.skipif(shutil.which("storescu") is None, reason="DCMTK not installed")


def spool_path(scp: Running, path: Path) -> Path:
    ds = dcmread(path, stop_before_pixels=True)
    return scp.state_dir / "spool" / str(ds.StudyInstanceUID) / str(ds.SeriesInstanceUID) / f"{ds.SOPInstanceUID}.dcm"


def assert_stored_identically(scp: Running, sent: list[Path]) -> None:
    for path in sent:
        stored = spool_path(scp, path)
        assert stored.exists(), stored
        assert dataset_bytes(stored) == dataset_bytes(path)
        original = dcmread(path, stop_before_pixels=True)
        meta = dcmread(stored, stop_before_pixels=True).file_meta
        assert meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID


def storescu(scp: Running, *files: Path, extra: tuple[str, ...] = ()) -> list[str]:
    return ["storescu", "-R", "-aet", "STORESCU", "-aec", SCP_AE, *extra, "127.0.0.1", str(scp.port), *map(str, files)]


async def test_echoscu(scp: Running) -> None:
    rc, out = await run_tool("echoscu", "-aet", "ECHOSCU", "-aec", SCP_AE, "127.0.0.1", str(scp.port))
    assert rc == 0, out


async def test_ct_series_300_slices_one_association(scp: Running, tmp_path: Path) -> None:
    study, series = new_study()
    files = [save(ct_slice(study, series, i), tmp_path / "ct") for i in range(300)]
    rc, out = await run_tool(*storescu(scp, *files))
    assert rc == 0, out
    await scp.wait_for(lambda: len(scp.images) == 300)
    assert_stored_identically(scp, files)
    first = scp.images[0]
    assert not first.duplicate
    summary = first.summary
    assert summary["study_instance_uid"] == study and summary["series_instance_uid"] == series
    assert summary["modality"] == "CT" and summary["accession_number"] == "ACC123"
    assert summary["station_name"] == "ROOM1" and summary["calling_ae"] == "STORESCU"
    assert summary["acquisition_datetime"] == "2026-11-22T10:15:00"
    assert summary["content_datetime"] == "2026-11-22T10:15:01.250"
    assert summary["number_of_frames"] == 1 and summary["bytes"] > 256 * 256 * 2
    assert summary["is_dose_sr"] is False
    text = repr([i.summary for i in scp.images])
    for phi in (PATIENT_NAME, PATIENT_ID, BIRTH_DATE, "Doe"):
        assert phi not in text
    with sqlite3.connect(scp.state_dir / "index.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM dicom_instances").fetchone()[0] == 300


async def test_several_associations_at_once(scp: Running, tmp_path: Path) -> None:
    batches = []
    for b in range(3):
        study, series = new_study()
        maker = xa_run if b == 0 else ct_slice
        batches.append([save(maker(study, series, i), tmp_path / f"b{b}") for i in range(20)])
    results = await asyncio.gather(*(run_tool(*storescu(scp, *files)) for files in batches))
    assert all(rc == 0 for rc, _ in results), results
    await scp.wait_for(lambda: len(scp.images) == 60)
    for files in batches:
        assert_stored_identically(scp, files)
    assert {i.summary["number_of_frames"] for i in scp.images} == {1, 10}


@pytest.mark.parametrize(
    ("tool", "args", "propose", "ts"),
    [
        ("dcmcjpeg", ("+eb",), "-xy", "1.2.840.10008.1.2.4.50"),
        ("dcmcjpeg", ("+e1",), "-xs", "1.2.840.10008.1.2.4.70"),
        ("dcmcjpls", (), "-xt", "1.2.840.10008.1.2.4.80"),
        ("dcmcrle", (), "-xr", "1.2.840.10008.1.2.5"),
    ],
)
async def test_compressed_transfer_syntaxes(
    scp: Running, tmp_path: Path, tool: str, args: tuple[str, ...], propose: str, ts: str
) -> None:
    study, series = new_study()
    plain = [save(ct_slice(study, series, i, rows=128, cols=128), tmp_path / "plain") for i in range(3)]
    compressed = []
    for path in plain:
        out = tmp_path / "c" / path.name
        out.parent.mkdir(exist_ok=True)
        rc, text = await run_tool(tool, *args, str(path), str(out))
        assert rc == 0, text
        compressed.append(out)
    assert dcmread(compressed[0], stop_before_pixels=True).file_meta.TransferSyntaxUID == ts
    rc, text = await run_tool(*storescu(scp, *compressed, extra=(propose,)))
    assert rc == 0, text
    await scp.wait_for(lambda: len(scp.images) == 3)
    assert_stored_identically(scp, compressed)
    assert {i.summary["transfer_syntax_uid"] for i in scp.images} == {ts}


async def test_dose_and_agent_srs(scp: Running, tmp_path: Path) -> None:
    study, series = new_study()
    files = [
        save(dose_sr(study, series, 1), tmp_path / "sr"),
        save(dose_sr(study, series, 2, ENHANCED_XRAY_DOSE_SR), tmp_path / "sr"),
        save(dose_sr(study, series, 3, PERFORMED_AGENT_SR), tmp_path / "sr"),
    ]
    rc, out = await run_tool(*storescu(scp, *files))
    assert rc == 0, out
    await scp.wait_for(lambda: len(scp.images) == 3)
    assert_stored_identically(scp, files)
    flags = {i.summary["sop_class_uid"]: (i.summary["is_dose_sr"], i.summary["is_agent_sr"]) for i in scp.images}
    assert flags == {
        "1.2.840.10008.5.1.4.1.1.88.67": (True, False),
        ENHANCED_XRAY_DOSE_SR: (True, False),
        PERFORMED_AGENT_SR: (False, True),
    }
    sr = next(i for i in scp.images if i.summary["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.88.67")
    assert dcmread(sr.path).ContentSequence[0].ConceptNameCodeSequence[0].CodeValue == "113722"


async def test_duplicate_instance_stored_once(scp: Running, tmp_path: Path) -> None:
    study, series = new_study()
    path = save(ct_slice(study, series, 0), tmp_path)
    for _ in range(2):
        rc, out = await run_tool(*storescu(scp, path))
        assert rc == 0, out
    await scp.wait_for(lambda: len(scp.images) == 2)
    assert [i.duplicate for i in scp.images] == [False, True]
    assert scp.images[0].path == scp.images[1].path
    assert len(list((scp.state_dir / "spool").rglob("*.dcm"))) == 1
    with sqlite3.connect(scp.state_dir / "index.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM dicom_instances").fetchone()[0] == 1


def _delayed_acks() -> int | None:
    """How many delayed ACKs the kernel has sent in this network namespace (TcpExt DelayedACKs), or None."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            fields = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(fields["DelayedACKs"]) if "DelayedACKs" in fields else None
    return None


async def test_a_sender_with_nagle_on_is_not_held_up_by_delayed_acks(scp: Running, tmp_path: Path) -> None:
    """DCMTK storescu as shipped (no TCP_NODELAY) holds a small object's data PDU back until its command PDU
    is acknowledged; a receiver that lets the kernel delay that ACK stalls it for up to 40 ms per object
    (storescp: two delayed ACKs per object, 23 objects/s). Counted, not timed."""
    before = _delayed_acks()
    if before is None:
        pytest.skip("the kernel does not count delayed ACKs here")
    study, series = new_study()
    files = [save(small_object(study, series, i), tmp_path) for i in range(40)]
    env = {name: value for name, value in os.environ.items() if name != "TCP_NODELAY"}
    rc, out = await run_tool(*storescu(scp, *files), env=env)
    assert rc == 0, out
    after = _delayed_acks()
    assert after is not None and after - before < 10  # held up: 40 or more; other traffic may add a few
    await scp.wait_for(lambda: len(scp.images) == len(files))


async def test_pynetdicom_scu_deflated_mr_with_sar(scp: Running) -> None:
    study, series = new_study()
    mr = mr_image(study, series, 1)
    mr.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.1.99")
    ct = ct_slice(study, series, 5)
    contexts = [(MRImageStorage, "1.2.840.10008.1.2.1.99"), (CTImageStorage, None)]
    statuses = await asyncio.to_thread(pynetdicom_store, scp.port, [mr, ct], contexts)
    assert statuses == [0, 0]
    await scp.wait_for(lambda: len(scp.images) == 2)
    mr_summary = scp.images[0].summary
    assert mr_summary["transfer_syntax_uid"] == "1.2.840.10008.1.2.1.99"
    assert (mr_summary["sar"], mr_summary["db_dt"], mr_summary["b1rms"]) == (1.25, 42.0, 2.5)
    stored = dcmread(scp.images[0].path)
    assert stored.SOPInstanceUID == mr.SOPInstanceUID and stored.SAR == 1.25
    assert "sar" not in scp.images[1].summary
