"""The DICOM receiver component: a pynetdicom SCP (C-ECHO, C-STORE, MPPS) on `dicom.bind:dicom.port`."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import structlog
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association

from suite_daemon.config import SuiteConfig
from suite_daemon.daemon.context import DaemonContext
from suite_daemon.dicom.filing import Filer
from suite_daemon.dicom.index import InstanceIndex
from suite_daemon.dicom.mpps import MppsService
from suite_daemon.dicom.part10 import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from suite_daemon.dicom.policy import REJECT_CHECK_FAILED, CallerPolicy, Rejection
from suite_daemon.dicom.sop_classes import (
    MPPS,
    NON_STORAGE_TRANSFER_SYNTAXES,
    STORAGE_SOP_CLASSES,
    STORAGE_TRANSFER_SYNTAXES,
    VERIFICATION,
)
from suite_daemon.dicom.spool import Spool
from suite_daemon.dicom.store import StoreService
from suite_daemon.dicom.tls import server_context
from suite_daemon.dicom.transport import LeanAssociationServer, LeanRequestHandler
from suite_daemon.events import AssociationRejected

log = structlog.get_logger()

# pynetdicom's "standard" level binds per-PDU debug-logging handlers: pure overhead here.
_config.LOG_HANDLER_LEVEL = "none"

SHUTDOWN_GRACE_S = 10.0
"""On stop, running associations get this long to finish before they are aborted."""
FLUSH_INTERVAL_S = 1.0


def build_ae(config: SuiteConfig) -> AE:
    cfg = config.dicom
    ae = AE(ae_title=cfg.ae_title)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    ae.maximum_associations = cfg.max_associations
    ae.acse_timeout = cfg.acse_timeout_s
    ae.dimse_timeout = cfg.dimse_timeout_s
    ae.network_timeout = cfg.network_timeout_s
    ae.maximum_pdu_size = cfg.max_pdu_size
    ae.require_called_aet = False  # checked by CallerPolicy, which audits the rejection
    ae.add_supported_context(VERIFICATION, list(NON_STORAGE_TRANSFER_SYNTAXES))
    ae.add_supported_context(MPPS, list(NON_STORAGE_TRANSFER_SYNTAXES))
    for uid in STORAGE_SOP_CLASSES.values():
        ae.add_supported_context(uid, list(STORAGE_TRANSFER_SYNTAXES))
    return ae


class DicomReceiver:
    name = "dicom"
    critical = True

    def __init__(self, config: SuiteConfig) -> None:
        self.config = config
        self.port: int | None = None
        """The port listened on, once started."""
        self._server: LeanAssociationServer | None = None
        self._ctx: DaemonContext | None = None
        self._policy: CallerPolicy | None = None

    async def run(self, ctx: DaemonContext, started: Callable[[], None]) -> None:
        cfg = self.config.dicom
        self._ctx = ctx
        spool = Spool(ctx.state_dir / "spool", cfg.ingest_log_mb * 1024 * 1024, cfg.direct_filing_min_kb * 1024)
        logged = await asyncio.to_thread(spool.prepare)
        try:
            index = await asyncio.to_thread(InstanceIndex, ctx.index_path)
        except BaseException:
            spool.close()
            raise
        store: StoreService | None = None
        try:
            store = StoreService(ctx, spool, index, cfg.min_free_mb)
            mpps = MppsService(ctx, index, cfg.mpps_commit_timeout_s, store.filer.flush)
            await asyncio.to_thread(store.recover, logged)
            store.filer.start()
            self._policy = await asyncio.to_thread(
                CallerPolicy, list(cfg.allowed_callers), cfg.ae_title, cfg.max_associations
            )
            handlers = [
                (evt.EVT_C_ECHO, lambda event: 0x0000),
                (evt.EVT_C_STORE, store.handle),
                (evt.EVT_N_CREATE, mpps.handle_create),
                (evt.EVT_N_SET, mpps.handle_set),
                (evt.EVT_REQUESTED, self._on_requested),
                (evt.EVT_ESTABLISHED, _on_established),
                (evt.EVT_ABORTED, _on_aborted),
            ]
            ae = build_ae(self.config)
            ssl_context = server_context(cfg.tls) if cfg.tls is not None else None
            server = await asyncio.to_thread(self._start_server, ae, handlers, ssl_context, spool, store.filer)
        except BaseException:
            if store is not None:
                store.filer.stop()
            spool.close()
            index.close()
            raise
        assert store is not None
        self._server = server
        self.port = server.server_address[1]
        log.info("dicom_listening", ae_title=cfg.ae_title, bind=cfg.bind, port=self.port, tls=ssl_context is not None)
        started()
        try:
            while True:
                await asyncio.sleep(FLUSH_INTERVAL_S)
                await asyncio.to_thread(index.flush_announced)
        finally:
            stopper = asyncio.ensure_future(asyncio.to_thread(self._shutdown, server, store, index, spool))
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(stopper)

    def _start_server(
        self, ae: AE, handlers: list[Any], ssl_context: Any, spool: Spool, filer: Filer
    ) -> LeanAssociationServer:
        cfg = self.config.dicom
        server = cast(
            LeanAssociationServer,
            ae.make_server(
                (cfg.bind, cfg.port),
                evt_handlers=handlers,
                ssl_context=ssl_context,
                server_class=LeanAssociationServer,
                request_handler=LeanRequestHandler,
            ),
        )
        server.spool = spool
        server.filer = filer
        ae._servers.append(server)  # as AE.start_server does; server.shutdown() removes it
        thread = threading.Thread(target=server.serve_forever, name="dicom-accept", daemon=True)
        thread.start()
        return server

    def _shutdown(self, server: LeanAssociationServer, store: StoreService, index: InstanceIndex, spool: Spool) -> None:
        server.shutdown()  # stops accepting and closes the listening socket
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        while server.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        for assoc in server.active_associations:
            log.warning("dicom_association_aborted_on_stop", calling_ae=str(assoc.requestor.ae_title).strip())
            assoc.abort()
        store.filer.stop()
        spool.close()
        index.close()
        log.info("dicom_stopped")

    def _on_requested(self, event: Any) -> None:
        assoc: Association = event.assoc
        rq = assoc.requestor.primitive
        assert rq is not None  # set before EVT_REQUESTED fires
        calling = str(rq.calling_ae_title).strip()
        called = str(rq.called_ae_title).strip()
        host, port = str(assoc.requestor.address), int(assoc.requestor.port)
        try:
            active = sum(1 for a in self._server.active_associations if a.is_acceptor) if self._server else 1
            assert self._policy is not None
            rejection = self._policy.check(calling, called, host, active)
        except Exception:
            # pynetdicom would log and swallow this handler's exception, then accept the caller: refuse instead.
            log.exception("dicom_caller_check_failed", calling_ae=calling, host=host)
            rejection = Rejection(REJECT_CHECK_FAILED, "the caller could not be checked")
        if rejection is None:
            return
        assoc.acse.send_reject(*rejection.rsd)
        assert self._ctx is not None
        log.warning(
            "dicom_association_rejected", calling_ae=calling, called_ae=called, host=host, reason=rejection.reason
        )
        ctx = self._ctx
        try:
            ctx.audit_daemon(
                "association_rejected",
                calling_ae=calling,
                called_ae=called,
                host=host,
                port=port,
                reason=rejection.reason,
            )
        finally:
            ctx.submit(
                AssociationRejected(calling_ae=calling, called_ae=called, host=host, port=port, reason=rejection.reason)
            )
        evt.trigger(assoc, evt.EVT_REJECTED, {})
        assoc.kill()


def _on_established(event: Any) -> None:
    r = event.assoc.requestor
    log.info("dicom_association_accepted", calling_ae=str(r.ae_title).strip(), host=str(r.address))


def _on_aborted(event: Any) -> None:
    r = event.assoc.requestor
    log.info("dicom_association_aborted", calling_ae=str(r.ae_title).strip(), host=str(r.address))
