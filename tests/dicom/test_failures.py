"""Bad input and refused callers: a defined status, an audit record, an alert, and the receiver keeps serving."""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage
from pynetdicom import AE, _config
from pynetdicom.association import Association
from pynetdicom.dsutils import encode
from pynetdicom.dul import DULServiceProvider
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # made at import by pynetdicom
    ModalityPerformedProcedureStep,
    Verification,
)

from suite_daemon.dicom.part10 import encode_file_meta
from suite_daemon.dicom.policy import CallerPolicy
from tests.association_probe import (
    RELEASE_RQ,
    abort_or_close,
    c_store_command,
    c_store_status,
    command_set,
    open_association,
    p_data,
    request_association,
)
from tests.dicom.dicom_harness import (
    SCP_AE,
    Running,
    close_requestor_socket,
    pynetdicom_store,
    run_tool,
    running_receiver,
)
from tests.dicom.dicom_testdata import CT, XA, ct_slice, dataset_bytes, new_study, save, xa_run


# The ingest log's first-start segment creation (tens of MB of zeros written and synced) coincided with
# rare 30 s stalls of these tests' answers under load (3 in 26 runs with both cores busy, none in 18 runs
# without the log; cause not found yet, see the issue): these tests, which are not about the log, run
# without it.
@pytest.fixture
async def scp(tmp_path: Path) -> AsyncIterator[Running]:
    async with running_receiver(tmp_path / "state", ingest_log_mb=0) as running:
        yield running


def _store_files(port: int, files: list[Path], sop_class: str = CT) -> list[int]:
    """Send Part 10 files' data set bytes as they are (no re-encoding), one association."""
    return pynetdicom_store(port, files, [(sop_class, "1.2.840.10008.1.2.1")])


def _raw_file(folder: Path, name: str, sop_instance: str, body: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(encode_file_meta(CT, sop_instance, "1.2.840.10008.1.2.1", "TESTSCU") + body)
    return path


@pytest.fixture
def raw_send(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)


async def test_out_of_space_returns_a700(tmp_path: Path, raw_send: None) -> None:
    study, series = new_study()
    path = save(ct_slice(study, series, 0), tmp_path / "in")
    async with running_receiver(tmp_path / "state", ingest_log_mb=0, min_free_mb=10**9) as scp:
        assert await asyncio.to_thread(_store_files, scp.port, [path]) == [0xA700]
        await scp.wait_for(lambda: bool(scp.alerts))
        assert not list((scp.state_dir / "spool").rglob("*.dcm"))
        assert not scp.images
    alert = scp.alerts[0]
    assert (alert.level, alert.kind, alert.data["reason"]) == ("critical", "dicom_store_failed", "out_of_space")
    assert [r["status"] for r in scp.audit if r["event"] == "dicom_store_failed"] == ["0xA700"]


async def test_garbage_truncated_and_uidless_datasets_fail_then_service_goes_on(
    scp: Running, tmp_path: Path, raw_send: None
) -> None:
    study, series = new_study()
    good = save(ct_slice(study, series, 0), tmp_path / "in")
    valid = dataset_bytes(good)
    sop = str(ct_slice(study, series, 0).SOPInstanceUID)
    truncated = _raw_file(tmp_path / "bad", "truncated.dcm", sop, valid[: len(valid) // 2])
    garbage = _raw_file(tmp_path / "bad", "garbage.dcm", sop, bytes(range(256)) * 8)
    no_uids = Dataset()
    no_uids.SOPClassUID = CT
    no_uids.SOPInstanceUID = sop
    no_uids.Modality = "CT"
    uidless = _raw_file(tmp_path / "bad", "uidless.dcm", sop, _explicit_le(no_uids))
    statuses = await asyncio.to_thread(_store_files, scp.port, [truncated, garbage, uidless])
    assert all(0xC000 <= s <= 0xCFFF for s in statuses), [hex(s) for s in statuses]
    assert statuses[2] == 0xC220
    assert not list((scp.state_dir / "spool").rglob("*.dcm"))
    # The same association and a new one both still work.
    assert await asyncio.to_thread(_store_files, scp.port, [good]) == [0]
    await scp.wait_for(lambda: len(scp.images) == 1 and len(scp.alerts) == 3)
    assert dataset_bytes(scp.images[0].path) == valid
    assert len([r for r in scp.audit if r["event"] == "dicom_store_failed"]) == 3


def _explicit_le(ds: Dataset) -> bytes:
    raw = encode(ds, False, True)
    assert raw is not None
    return raw


def _associate(
    port: int, calling: str, bind_host: str = "127.0.0.1", called: str = SCP_AE
) -> tuple[bool, tuple[int, ...]]:
    rejection = request_association(port, calling, called, bind_host)
    return rejection is None, rejection or ()


@pytest.mark.parametrize(
    ("calling", "host", "called", "reason"),
    [
        ("INTRUDER", "127.0.0.1", SCP_AE, "calling AE title not allowed"),
        ("TESTSCU", "127.0.0.2", SCP_AE, "calling AE title not allowed from this host"),
        ("TESTSCU", "127.0.0.1", "OTHER_SCP", "called AE title is not this receiver's"),
    ],
)
async def test_caller_not_allowed_is_rejected_and_audited(
    scp: Running, calling: str, host: str, called: str, reason: str
) -> None:
    ok, rsd = await asyncio.to_thread(_associate, scp.port, calling, host, called)
    assert not ok
    assert rsd == ((1, 1, 3) if "calling" in reason else (1, 1, 7))
    await scp.wait_for(lambda: bool(scp.rejections))
    rejected = scp.rejections[0]
    assert (rejected.calling_ae, rejected.called_ae, rejected.host, rejected.reason) == (calling, called, host, reason)
    assert scp.audit == [
        {
            "event": "association_rejected",
            "calling_ae": calling,
            "called_ae": called,
            "host": host,
            "port": rejected.port,
            "reason": reason,
        }
    ]
    rc, out = await run_tool("echoscu", "-aet", "ECHOSCU", "-aec", SCP_AE, "127.0.0.1", str(scp.port))
    assert rc == 0, out


async def test_a_failing_caller_check_refuses_the_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # pynetdicom swallows an exception from this handler and would then accept the association.
    def broken(*_: object) -> None:
        raise RuntimeError("policy broke")

    monkeypatch.setattr(CallerPolicy, "check", broken)
    async with running_receiver(tmp_path / "state", ingest_log_mb=0) as scp:
        ok, rsd = await asyncio.to_thread(_associate, scp.port, "TESTSCU")
        assert not ok and rsd == (2, 1, 1)  # rejected-transient, service-user, no reason given
        await scp.wait_for(lambda: bool(scp.rejections))
        assert scp.rejections[0].reason == "the caller could not be checked"
        assert scp.audit[0]["event"] == "association_rejected"


async def test_empty_allow_list_refuses_everyone(tmp_path: Path) -> None:
    async with running_receiver(tmp_path / "state", ingest_log_mb=0, allowed_callers=[]) as scp:
        rc, _ = await run_tool("echoscu", "-aet", "ECHOSCU", "-aec", SCP_AE, "127.0.0.1", str(scp.port))
        assert rc != 0
        await scp.wait_for(lambda: bool(scp.rejections))


async def test_too_many_associations_rejected_transiently(tmp_path: Path) -> None:
    async with running_receiver(tmp_path / "state", ingest_log_mb=0, max_associations=1) as scp:

        def two_at_once() -> tuple[bool, tuple[int, ...]]:
            ae = AE(ae_title="TESTSCU")
            ae.add_requested_context(Verification)
            first = ae.associate("127.0.0.1", scp.port, ae_title=SCP_AE)
            assert first.is_established
            try:
                return _associate(scp.port, "TESTSCU")
            finally:
                first.release()

        ok, rsd = await asyncio.to_thread(two_at_once)
        assert not ok and rsd == (2, 3, 2)
        await scp.wait_for(lambda: bool(scp.rejections))
        assert scp.rejections[0].reason == "too many associations"


# -- TLS -----------------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(folder: Path) -> dict[str, Path]:
    """A test CA, a server certificate for 127.0.0.1 and a client certificate, made with the openssl CLI."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=folder)  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=folder)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", "san.ext", "-out", f"{name}.pem", cwd=folder)  # fmt: skip
    return {n: folder / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
async def test_tls_association(tmp_path: Path) -> None:
    pki = await asyncio.to_thread(make_pki, tmp_path / "pki")
    tls = {"cert_file": pki["server.pem"], "key_file": pki["server.key"], "ca_file": pki["ca.pem"]}
    study, series = new_study()
    path = save(ct_slice(study, series, 0), tmp_path / "in")

    def client(port: int, with_cert: bool) -> list[int] | str:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki["ca.pem"]))
        if with_cert:
            ctx.load_cert_chain(pki["client.pem"], pki["client.key"])
        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context(Verification)
        ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
        assoc = ae.associate("127.0.0.1", port, ae_title=SCP_AE, tls_args=(ctx, "127.0.0.1"))
        if not assoc.is_established:
            close_requestor_socket(assoc)
            return "refused"
        try:
            return [int(assoc.send_c_echo().Status), int(assoc.send_c_store(path).Status)]
        finally:
            assoc.release()

    async with running_receiver(tmp_path / "state", ingest_log_mb=0, tls=tls) as scp:
        # a caller that connects and never starts its handshake holds only its own thread
        _, silent = await asyncio.open_connection("127.0.0.1", scp.port)
        assert await asyncio.to_thread(client, scp.port, True) == [0, 0]
        silent.close()
        await scp.wait_for(lambda: len(scp.images) == 1)
        assert dataset_bytes(scp.images[0].path) == dataset_bytes(path)
        assert await asyncio.to_thread(client, scp.port, False) == "refused"  # no client certificate
        assert await asyncio.to_thread(client, scp.port, True) == [0, 0]  # and the listener is still fine


async def test_truncated_large_dataset_streamed_to_spool_is_dropped(tmp_path: Path, raw_send: None) -> None:
    """A data set spanning many PDUs is written while it arrives; when it proves bad, its file goes."""
    study, series = new_study()
    good = save(xa_run(study, series, 0, frames=8), tmp_path / "in")
    valid = dataset_bytes(good)
    sop = str(xa_run(study, series, 0, frames=1).SOPInstanceUID)
    truncated = tmp_path / "bad" / "xa.dcm"
    truncated.parent.mkdir()
    truncated.write_bytes(encode_file_meta(XA, sop, "1.2.840.10008.1.2.1", "TESTSCU") + valid[: len(valid) - 1000])
    async with running_receiver(tmp_path / "state", ingest_log_mb=0, max_pdu_size=16384) as scp:
        statuses = await asyncio.to_thread(_store_files, scp.port, [truncated, good], XA)
        assert statuses == [0xC210, 0]
        await scp.wait_for(lambda: len(scp.images) == 1)
        spooled = list((scp.state_dir / "spool").rglob("*.dcm"))
        assert spooled == [scp.images[0].path] and dataset_bytes(spooled[0]) == valid
        assert all(p.parent.name == ".incoming" for p in (scp.state_dir / "spool").rglob("*.tmp"))
        # only the pool of empty files is there, no abandoned partial object
        assert all(p.stat().st_size == 0 for p in (scp.state_dir / "spool" / ".incoming").iterdir())
    assert not list((scp.state_dir / "spool" / ".incoming").iterdir())  # and the pool is removed on stop


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs (root only; skipped where it cannot be mounted)."""
    mount = tmp_path / "small"
    mount.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)]
    if os.geteuid() != 0 or subprocess.run(command, capture_output=True, timeout=30).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


async def test_a_disk_that_fills_while_a_data_set_streams_in_gives_a700_and_service_goes_on(
    small_disk: Path, tmp_path: Path
) -> None:
    """The threshold did not catch it (min_free_mb = 0): the write itself fails part-way through a 4 MB run."""
    study, series = new_study()
    too_big = save(xa_run(study, series, 0, frames=30), tmp_path / "in")
    fits = save(xa_run(study, series, 1, frames=2), tmp_path / "in")
    async with running_receiver(small_disk / "state", ingest_log_mb=0, min_free_mb=0, max_pdu_size=16384) as scp:
        assert await asyncio.to_thread(_store_files, scp.port, [too_big, fits], XA) == [0xA700, 0]
        await scp.wait_for(lambda: len(scp.images) == 1 and bool(scp.alerts))
        spooled = list((scp.state_dir / "spool").rglob("*.dcm"))
        assert spooled == [scp.images[0].path] and dataset_bytes(spooled[0]) == dataset_bytes(fits)
        assert all(p.stat().st_size == 0 for p in (scp.state_dir / "spool" / ".incoming").iterdir())
    alert = scp.alerts[0]
    assert (alert.level, alert.data["reason"], alert.data["status"]) == ("critical", "spool_write_failed", "0xA700")


async def test_a_pdu_claiming_4_gib_is_refused_at_once_and_others_are_served(tmp_path: Path) -> None:
    """A peer claiming a 4 GiB A-ASSOCIATE-RQ: no allocation, no wait for its body; an A-ABORT at once, the
    connection closed, and other callers served meanwhile."""
    async with running_receiver(tmp_path / "state", ingest_log_mb=0) as scp:
        reader, writer = await asyncio.open_connection("127.0.0.1", scp.port)
        writer.write(b"\x01\x00\xff\xff\xff\xff" + b"\x00" * 1000)
        await writer.drain()
        rc, out = await run_tool("echoscu", "-aet", "ECHOSCU", "-aec", SCP_AE, "127.0.0.1", str(scp.port))
        assert rc == 0, out
        async with asyncio.timeout(10):
            assert (await reader.read())[:1] == b"\x07"  # A-ABORT, then the receiver closed the connection
        writer.close()
        rc, out = await run_tool("echoscu", "-aet", "ECHOSCU", "-aec", SCP_AE, "127.0.0.1", str(scp.port))
        assert rc == 0, out


async def test_a_peer_trickling_a_pdu_is_dropped_after_the_network_timeout(tmp_path: Path) -> None:
    """A byte every 0.2 s never trips the socket's receive timeout (1 s here); the PDU's own deadline (the
    network timeout, plus a second per MiB) drops the connection."""
    async with running_receiver(tmp_path / "state", ingest_log_mb=0, network_timeout_s=1.0, acse_timeout_s=1.0) as scp:
        reader, writer = await asyncio.open_connection("127.0.0.1", scp.port)
        writer.write(b"\x01\x00\x00\x00\x01\x00")  # an A-ASSOCIATE-RQ of 256 bytes, never finished
        closed_after = None
        started = asyncio.get_running_loop().time()
        for _ in range(100):  # 20 s at most
            await asyncio.sleep(0.2)
            try:
                writer.write(b"\x00")
                await writer.drain()
            except ConnectionError:
                closed_after = asyncio.get_running_loop().time() - started
                break
            if reader.at_eof() or (await _read_some(reader)) == b"":
                closed_after = asyncio.get_running_loop().time() - started
                break
        writer.close()
        assert closed_after is not None and closed_after < 10


async def _read_some(reader: asyncio.StreamReader) -> bytes | None:
    """What arrived (b"" once closed), or None if nothing did."""
    try:
        async with asyncio.timeout(0.01):
            return await reader.read(100)
    except TimeoutError:
        return None


def _send_one_pdv(port: int, command: bytes, data: bytes) -> int | None:
    """A C-STORE whose data set goes in one PDV of one P-DATA-TF: its status, None if the daemon aborted."""
    with open_association(port, "TESTSCU", SCP_AE, CT) as sock:
        try:
            sock.sendall(p_data(1, 0x03, command) + p_data(1, 0x02, data))
            return c_store_status(sock)
        except (AssertionError, OSError):  # aborted (maybe before it had all been sent)
            return None


async def test_a_p_data_larger_than_the_advertised_maximum_is_aborted(tmp_path: Path) -> None:
    study, series = new_study()
    source = save(ct_slice(study, series, 0, rows=128, cols=128), tmp_path / "in")
    command = c_store_command(CT.encode(), source.stem.encode())
    async with running_receiver(tmp_path / "state", ingest_log_mb=0, max_pdu_size=16384) as scp:
        assert await asyncio.to_thread(_send_one_pdv, scp.port, command, dataset_bytes(source)) is None
        assert not scp.images


async def test_a_data_set_in_one_huge_pdu_is_stored_byte_for_byte(tmp_path: Path) -> None:
    """With no maximum advertised a sender may put a 20 MB data set in one PDU: it is handed on in pieces as
    it arrives (never held whole) and stored exactly."""
    study, series = new_study()
    source = save(ct_slice(study, series, 0, rows=3200, cols=3200), tmp_path / "in")
    data = dataset_bytes(source)
    assert len(data) > 20_000_000
    command = c_store_command(CT.encode(), source.stem.encode())
    async with running_receiver(tmp_path / "state", ingest_log_mb=0) as scp:
        assert await asyncio.to_thread(_send_one_pdv, scp.port, command, data) == 0x0000
        await scp.wait_for(lambda: len(scp.images) == 1)
        assert dataset_bytes(scp.images[0].path) == data


async def test_store_handler_exception_answers_c211_and_association_goes_on(
    tmp_path: Path, raw_send: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The C-STORE fast path serves requests as pynetdicom's Storage SCP does: a handler that raises is
    answered 0xC211 (processing failure) and the association carries on."""
    from suite_daemon.dicom.store import StoreService

    study, series = new_study()
    paths = [save(ct_slice(study, series, i), tmp_path / "in") for i in range(3)]
    real_handle = StoreService.handle
    calls = 0

    def flaky_handle(self: StoreService, event: object) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("handler bug")
        return real_handle(self, event)

    monkeypatch.setattr(StoreService, "handle", flaky_handle)
    async with running_receiver(tmp_path / "state", ingest_log_mb=0) as scp:
        assert await asyncio.to_thread(_store_files, scp.port, paths) == [0x0000, 0xC211, 0x0000]
        await scp.wait_for(lambda: len(scp.images) == 2)


def _server_of(thread: threading.Thread) -> object:
    assoc = thread.assoc if isinstance(thread, DULServiceProvider) else thread
    return getattr(assoc, "_server", None)


def _store_outside_the_rules(port: int, context_id: int, sop_class: bytes, sop_instance: bytes) -> bool:
    """A C-STORE on an association for CT images that breaks a rule: whether the daemon aborted it."""
    with open_association(port, "TESTSCU", SCP_AE, CT) as sock:
        message = (
            p_data(context_id, 0x03, c_store_command(sop_class, sop_instance))
            + p_data(context_id, 0x00, b"\x08\x00\x18\x00UI\x04\x001.2\x00" * 100)
            + p_data(context_id, 0x02, b"")
        )
        sock.sendall(message)  # in one go: the abort may come as soon as the command is read
        return abort_or_close(sock)


@pytest.mark.parametrize(
    ("context_id", "sop_class"),
    [(3, CT.encode()), (1, b"1.2.3")],
    ids=["context-not-negotiated", "sop-class-not-storage"],
)
async def test_a_store_on_an_unknown_context_or_for_no_storage_class_is_aborted_and_ends(
    scp: Running, context_id: int, sop_class: bytes
) -> None:
    """pynetdicom aborts such an association; the abort must end it for good (its threads gone, not counted
    as active), and the next caller is served."""
    aborted = await asyncio.to_thread(_store_outside_the_rules, scp.port, context_id, sop_class, b"1.2.3.4")
    assert aborted
    server = scp.receiver._server
    assert server is not None

    def still_running() -> list[threading.Thread]:
        return [
            t
            for t in threading.enumerate()
            if isinstance(t, (Association, DULServiceProvider)) and t.is_alive() and _server_of(t) is server
        ]

    for thread in still_running():
        await asyncio.to_thread(thread.join, 10)
    assert not still_running()
    incoming = scp.state_dir / "spool" / ".incoming"
    assert all(p.stat().st_size == 0 for p in incoming.iterdir())  # the data set streamed in was dropped
    rc, out = await run_tool("echoscu", "-aet", "ECHOSCU", "-aec", SCP_AE, "127.0.0.1", str(scp.port))
    assert rc == 0, out
    assert not list((scp.state_dir / "spool").rglob("*.dcm"))


def _store_with_a_non_ascii_uid_then_a_valid_one(port: int, data: bytes, sop_instance: bytes) -> list[int]:
    with open_association(port, "TESTSCU", SCP_AE, CT) as sock:
        statuses = []
        for message_id, uid in ((1, b"1.2.\xe9"), (2, sop_instance)):
            sock.sendall(p_data(1, 0x03, c_store_command(CT.encode(), uid, message_id)))
            sock.sendall(p_data(1, 0x02, data))
            statuses.append(c_store_status(sock))
        sock.sendall(RELEASE_RQ)
        return statuses


async def test_a_request_uid_with_a_non_ascii_byte_gets_a_failure_status_and_the_association_goes_on(
    scp: Running, tmp_path: Path
) -> None:
    study, series = new_study()
    source = save(ct_slice(study, series, 0, rows=8, cols=8), tmp_path / "in")
    statuses = await asyncio.to_thread(
        _store_with_a_non_ascii_uid_then_a_valid_one, scp.port, dataset_bytes(source), source.stem.encode()
    )
    assert statuses[0] >= 0xA000 and statuses[1] == 0x0000
    await scp.wait_for(lambda: len(scp.images) == 1 and len(scp.alerts) == 1)


def _message_without_end(port: int, kind: str, limit: int) -> tuple[bool, int]:
    """An N-CREATE, or a C-STORE whose command comes in two PDVs (so pynetdicom gathers it), with a data set
    that keeps coming, 1 MiB per P-DATA: (aborted, bytes sent before the A-ABORT)."""
    us = struct.Struct("<H").pack
    if kind == "n-create":
        sop_class = ModalityPerformedProcedureStep.encode()
        command = command_set({0x0002: sop_class, 0x0100: us(0x0140), 0x0110: us(1), 0x0800: us(0)})
    else:
        sop_class = CT.encode()
        command = c_store_command(sop_class, b"1.2.3.4")
    piece = p_data(1, 0x00, b"\0" * (1 << 20))
    with open_association(port, "TESTSCU", SCP_AE, sop_class.decode()) as sock:
        sock.sendall(p_data(1, 0x01, command[:20]) + p_data(1, 0x03, command[20:]))
        sent = 0
        while sent < limit:
            try:
                sock.sendall(piece)
            except OSError:
                break
            sent += len(piece)
            if select.select([sock], [], [], 0)[0]:
                break
        return abort_or_close(sock), sent


@pytest.mark.parametrize("kind", ["n-create", "c-store-with-a-split-command"])
async def test_a_message_gathered_in_memory_that_keeps_growing_is_aborted(tmp_path: Path, kind: str) -> None:
    """pynetdicom gathers such a message's data set in memory: past 64 MiB the association is aborted."""
    async with running_receiver(tmp_path / "state", ingest_log_mb=0, acse_timeout_s=1.0) as scp:
        aborted, sent = await asyncio.to_thread(_message_without_end, scp.port, kind, 256 << 20)
        assert aborted and 64 << 20 < sent < 128 << 20
        rc, out = await run_tool("echoscu", "-aet", "ECHOSCU", "-aec", SCP_AE, "127.0.0.1", str(scp.port))
        assert rc == 0, out


def _send_steadily(port: int, command: bytes, data: bytes, rate: int) -> int | None:
    """A C-STORE whose data set comes in one PDU at `rate` bytes/s (a tenth each 0.1 s): its status, None if
    the daemon dropped it."""
    with open_association(port, "TESTSCU", SCP_AE, CT) as sock:
        sock.sendall(p_data(1, 0x03, command))
        pdu = p_data(1, 0x02, data)
        step = rate // 10
        try:
            for pos in range(0, len(pdu), step):
                sock.sendall(pdu[pos : pos + step])
                time.sleep(0.1)
            return c_store_status(sock)
        except (OSError, AssertionError):
            return None


async def test_a_pdu_arriving_steadily_for_longer_than_the_network_timeout_is_taken(tmp_path: Path) -> None:
    """The network timeout is for silence, not for a long PDU: 4 MiB at 2 MiB/s with a 1 s timeout is stored
    (its own deadline is the timeout plus a second per MiB)."""
    study, series = new_study()
    source = save(ct_slice(study, series, 0, rows=1448, cols=1448), tmp_path / "in")
    command = c_store_command(CT.encode(), source.stem.encode())
    async with running_receiver(tmp_path / "state", ingest_log_mb=0, network_timeout_s=1.0) as scp:
        status = await asyncio.to_thread(_send_steadily, scp.port, command, dataset_bytes(source), 2 << 20)
        assert status == 0x0000
        await scp.wait_for(lambda: len(scp.images) == 1)
