"""C-STORE-RQ decoding and C-STORE-RSP encoding without building pydicom datasets.

pynetdicom decodes every command set into a pydicom `Dataset`, copies it into a primitive through
validating setters, and encodes every response the same way: about 0.5 ms of CPU per object, more than
a small object's whole budget. These are the two messages a storage SCP exchanges per object, and their
command sets are tiny, fixed, implicit VR little endian structures, so they are read and written here
directly. A complete C-STORE is served as pynetdicom's Storage SCP serves it (the EVT_C_STORE handler, its
status answered) without building and validating a response primitive. Every other message (C-ECHO,
N-CREATE, N-SET, failures with comments) takes pynetdicom's path.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import struct
from collections.abc import Callable
from io import BytesIO
from typing import Any, cast

import structlog
from pydicom import config as pydicom_config
from pydicom.uid import UID
from pynetdicom import _config, evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

from suite_daemon.dicom.part10 import UID_RE, clean_uid, encode_file_meta
from suite_daemon.dicom.spool import Spool, SpoolStream

log = structlog.get_logger()

_Handler = tuple[Callable[..., Any] | None, list[Any] | None]
"""What `Association.get_handlers` returns for an intervention event such as EVT_C_STORE."""

_ELEMENT = struct.Struct("<HHI")
_US = struct.Struct("<H")
_PDU_HEADER = struct.Struct(">BxL")
_PDV_ITEM = struct.Struct(">LB")
_PROCESSING_FAILURE = 0xC211
_C_STORE_RQ = 0x0001
_C_STORE_RSP = 0x8001
_NO_DATASET = 0x0101


def parse_command(raw: bytes | memoryview) -> dict[int, bytes] | None:
    """Command group elements (implicit VR LE) as tag -> raw value; None if malformed."""
    out: dict[int, bytes] = {}
    pos, end = 0, len(raw)
    while pos < end:
        if pos + 8 > end:
            return None
        group, elem, length = _ELEMENT.unpack_from(raw, pos)
        pos += 8
        if group != 0x0000 or pos + length > end:
            return None
        out[elem] = bytes(raw[pos : pos + length])
        pos += length
    return out


def _us(value: bytes | None) -> int | None:
    return _US.unpack(value[:2])[0] if value is not None and len(value) >= 2 else None


def _text(value: bytes | None) -> str | None:
    """A command element's text. Latin-1 maps every byte to one character and back, so a UID holding bytes no
    UID may hold is answered with the same bytes (and refused by the store, not by an encoding error)."""
    if value is None:
        return None
    return value.decode("latin-1").rstrip("\x00 ").strip() or None


def c_store_rq(command: dict[int, bytes]) -> C_STORE | None:
    """The C-STORE request primitive, if `command` is a well-formed C-STORE-RQ with a data set."""
    if _us(command.get(0x0100)) != _C_STORE_RQ or _us(command.get(0x0800)) in (None, _NO_DATASET):
        return None
    message_id = _us(command.get(0x0110))
    sop_class = _text(command.get(0x0002))
    sop_instance = _text(command.get(0x1000))
    priority = _us(command.get(0x0700))
    if message_id is None or not sop_class or not sop_instance or priority not in (0, 1, 2):
        return None
    primitive = C_STORE()
    primitive._message_id = message_id
    # Not validated here (pydicom would only warn): the store checks the UIDs it files objects under.
    primitive._affected_sop_class_uid = UID(sop_class, validation_mode=pydicom_config.IGNORE)
    primitive._affected_sop_instance_uid = UID(sop_instance, validation_mode=pydicom_config.IGNORE)
    primitive._priority = priority
    primitive._move_originator_application_entity_title = _text(command.get(0x1030))
    primitive._move_originator_message_id = _us(command.get(0x1031))
    return primitive


def _element(elem: int, value: bytes) -> bytes:
    return _ELEMENT.pack(0x0000, elem, len(value)) + value


def _uid(value: str) -> bytes:
    raw = value.encode("latin-1", "replace")
    return raw + b"\x00" if len(raw) % 2 else raw


def c_store_rsp(primitive: Any) -> bytes | None:
    """The encoded command set of a plain C-STORE-RSP (no offending element / error comment), else None."""
    if not isinstance(primitive, C_STORE) or primitive.MessageIDBeingRespondedTo is None:
        return None
    if primitive.Status is None or primitive.OffendingElement is not None or primitive.ErrorComment is not None:
        return None
    return encode_c_store_rsp(
        primitive.MessageIDBeingRespondedTo,
        str(primitive.AffectedSOPClassUID or ""),
        str(primitive.AffectedSOPInstanceUID or ""),
        primitive.Status,
    )


def encode_c_store_rsp(message_id: int, sop_class: str, sop_instance: str, status: int) -> bytes:
    body = b"".join(
        (
            _uid_element(0x0002, sop_class),
            _RSP_COMMAND_FIELD,
            _US_ELEMENT.pack(0x0000, 0x0120, 2, message_id),
            _RSP_NO_DATASET,
            _US_ELEMENT.pack(0x0000, 0x0900, 2, status),
            _element(0x1000, _uid(sop_instance)),
        )
    )
    return _element(0x0000, struct.pack("<I", len(body))) + body


_US_ELEMENT = struct.Struct("<HHIH")
_RSP_COMMAND_FIELD = _element(0x0100, _US.pack(_C_STORE_RSP))
_RSP_NO_DATASET = _element(0x0800, _US.pack(_NO_DATASET))


@functools.lru_cache(maxsize=256)
def _uid_element(elem: int, uid: str) -> bytes:
    """A UID element that repeats (the SOP class of every answer on an association): built once."""
    return _element(elem, _uid(uid))


_MESSAGE_MAX = 64 * 1024 * 1024
"""Largest message pynetdicom may gather in memory: MPPS messages are kilobytes, and a C-STORE comes this way
only when the fast path cannot read its command (split over several PDVs, which no known sender does)."""


def _buffered(message: DIMSEMessage) -> int:
    data_set = message.data_set
    return message.encoded_command_set.tell() + (data_set.tell() if isinstance(data_set, BytesIO) else 0)


_storage_class: dict[str, bool] = {}
_STORAGE_CLASS_CACHE_MAX = 1024
"""The UIDs come from peers: the cache stays bounded whatever they send."""


def _is_storage_class(uid: str) -> bool:
    """Whether pynetdicom serves a request for `uid` with its Storage SCP (cached: its lookup scans lists)."""
    known = _storage_class.get(uid)
    if known is None:
        known = uid_to_service_class(uid) is StorageServiceClass
        if len(_storage_class) < _STORAGE_CLASS_CACHE_MAX:
            _storage_class[uid] = known
    return known


class LeanDIMSE(DIMSEServiceProvider):
    """pynetdicom's DIMSE provider with the C-STORE request/response fast paths above.

    A complete C-STORE request is served by pynetdicom's `_serve_request` on the DUL thread that decoded
    it (the store handler, then the response sent straight to the socket in Sta6).
    """

    def __init__(self, assoc: Any) -> None:
        super().__init__(assoc)
        self._store: C_STORE | None = None
        self._store_data = BytesIO()
        self._stream: SpoolStream | None = None
        self._ordinary_association: bool | None = None
        """Whether this association's C-STOREs can take `_serve_store` (`_ordinary`), once it is established."""
        self._context_tuples: dict[int, Any] = {}

    def close(self) -> None:
        """The association is over: drop the files of objects received but never answered."""
        if self._stream is not None:
            self._stream.discard()
            self._stream = None
        while True:  # received but never served; each taken off the queue, so the association thread cannot
            try:  # serve one whose stream is discarded here
                _, request = self.msg_queue.get_nowait()
            except queue.Empty:
                return
            stream = getattr(request, "suite_stream", None)
            if stream is not None and not stream.committed:
                stream.discard()

    def _open_stream(self, request: C_STORE, context_id: int) -> None:
        """A data set spanning several PDUs is written to its spool file while it arrives."""
        spool: Spool | None = getattr(getattr(self.assoc, "_server", None), "spool", None)
        context = self.assoc._accepted_cx.get(context_id)
        if spool is None or context is None:
            return
        # A UID no UID may be is never filed (the store refuses the object), but its data set is still streamed
        # to disk, not gathered in memory: the head then names "0" instead.
        sop_class, sop_instance = (
            uid if UID_RE.fullmatch(uid) else "0"
            for uid in (clean_uid(request.AffectedSOPClassUID), clean_uid(request.AffectedSOPInstanceUID))
        )
        head = encode_file_meta(
            sop_class,
            sop_instance,
            str(context.transfer_syntax[0]),
            str(self.assoc.requestor.ae_title).strip(),
        )
        try:
            stream = spool.open_stream(head)
        except OSError:
            return  # the handler writes the file itself and reports what fails
        request.suite_stream = stream  # type: ignore[attr-defined]
        self._stream = stream

    def receive_primitive(self, primitive: P_DATA) -> None:
        pdvs = primitive.presentation_data_value_list
        if self._store is None and self.message is None and pdvs and pdvs[0][1][0] & 0x03 == 0x03:
            context_id, fragment = pdvs[0]
            command = parse_command(fragment[1:])
            request = c_store_rq(command) if command is not None else None
            if request is not None:
                if context_id not in self.assoc._accepted_cx:
                    # pynetdicom would buffer the whole data set, then abort from this thread and wait for
                    # itself forever: the DUL aborts the association now (an invalid PDU parameter).
                    self.dul.event_queue.put("Evt19")
                    return
                request._context_id = context_id
                self._store, self._store_data = request, BytesIO()
                pdvs = pdvs[1:]
        if self._store is None:
            super().receive_primitive(primitive)
            message = self.message  # None once complete
            if message is not None and _buffered(message) > _MESSAGE_MAX:
                self.dul.event_queue.put("Evt19")  # e.g. an N-CREATE carrying gigabytes: abort, not run out of memory
            return
        for _, fragment in pdvs:
            if fragment[0] & 0x01:  # a command fragment before the data set ended
                self._store = None
                self.dul.event_queue.put("Evt19")
                return
            data = fragment[1:]
            if self._stream is None and not fragment[0] & 0x02 and self._store_data.tell() == 0:
                self._open_stream(self._store, cast(int, self._store._context_id))
            if self._stream is not None:
                self._stream.feed(data)  # the store reads the data set back from there: no copy in memory
            else:
                self._store_data.write(data)
            if fragment[0] & 0x02:
                request, self._store, self._stream = self._store, None, None
                request.DataSet = self._store_data
                if self.msg_queue.empty() and self.assoc.is_established and self._ordinary(request):
                    # Served right here in the DUL thread: the SCU waits for this answer before sending more,
                    # so nothing is read meanwhile, and a hand-over to the association thread is saved.
                    # (A request that arrives while the association thread is still finishing the
                    # negotiation is queued for it: pynetdicom would not answer it before that. So is one
                    # pynetdicom may answer by aborting: an abort waits for this thread to finish.)
                    filer = getattr(getattr(self.assoc, "_server", None), "filer", None)
                    with filer.inline() if filer is not None else contextlib.nullcontext():
                        self._serve_store(request, cast(int, request._context_id))
                else:  # keep the order behind messages the association thread has not served yet
                    self.msg_queue.put((request._context_id, request))  # type: ignore[arg-type]
                return

    def _ordinary(self, request: C_STORE) -> bool:
        """Whether `_serve_store` can serve this request on the DUL thread. Anything out of the ordinary (a
        release under way, extended negotiation, a SOP class pynetdicom would not serve
        as storage, no handler) is queued for the association thread and pynetdicom's own path."""
        assoc = self.assoc
        if self._ordinary_association is None:  # what negotiation settled: read once (property chains, ~1 us)
            handler, _ = cast(_Handler, assoc.get_handlers(evt.EVT_C_STORE) or (None, None))
            self._ordinary_association = handler is not None and not assoc.acceptor.accepted_common_extended
        return (  # (its context was accepted: a C-STORE on any other is aborted when its command arrives)
            self._ordinary_association
            and not assoc._sent_release
            and not _config.UNRESTRICTED_STORAGE_SERVICE
            and _is_storage_class(str(request.AffectedSOPClassUID))
        )

    def _serve_store(self, request: C_STORE, context_id: int) -> None:
        """What pynetdicom's `_serve_request` and `StorageServiceClass.SCP` do for an ordinary C-STORE (see
        `_ordinary`), without the response primitive: the EVT_C_STORE handler (0xC211 if it raises), then the
        status answered. A status that is a data set or out of range takes pynetdicom's validation."""
        assoc = self.assoc
        context = assoc._accepted_cx[context_id]
        sop_class = str(request.AffectedSOPClassUID)
        handler, args = cast(_Handler, assoc.get_handlers(evt.EVT_C_STORE))
        assert handler is not None  # checked by `_ordinary`
        self.cancel_req = {}
        assoc._is_paused = True
        try:
            context_tuple = self._context_tuples.get(context_id)
            if context_tuple is None:
                context_tuple = self._context_tuples[context_id] = context.as_tuple
            event = evt.Event(assoc, evt.EVT_C_STORE, {"request": request, "context": context_tuple})
            try:
                status = handler(event, *args) if args else handler(event)
            except Exception:
                log.exception("dicom_store_handler_error")
                status = _PROCESSING_FAILURE
            if not assoc.is_established:
                return
            if not isinstance(status, int) or isinstance(status, bool) or not 0 <= status <= 0xFFFF:
                # A data set or an unusable value: pynetdicom's validation and response.
                rsp = C_STORE()
                rsp.MessageIDBeingRespondedTo = request.MessageID
                rsp.AffectedSOPInstanceUID = request.AffectedSOPInstanceUID
                rsp.AffectedSOPClassUID = request.AffectedSOPClassUID
                self.send_msg(StorageServiceClass(assoc).validate_status(status, rsp), context_id)
                return
            command = encode_c_store_rsp(
                cast(int, request.MessageID), sop_class, str(request.AffectedSOPInstanceUID), status
            )
            self._send_command(command, context_id)
        finally:
            assoc._is_paused = False
            self.cancel_req = {}

    def send_msg(self, primitive: Any, context_id: int) -> None:
        command = c_store_rsp(primitive)
        if command is None:
            super().send_msg(primitive, context_id)
            return
        self._send_command(command, context_id)

    def _send_command(self, command: bytes, context_id: int) -> None:
        """Send an encoded command set (no data set) as one P-DATA."""
        dul = self.dul
        if dul.state_machine.current_state == "Sta6" and not dul.to_provider_queue.queue and dul.socket is not None:
            # DT-1 (send P-DATA-TF, stay in Sta6) from this thread: no hand-over to the DUL thread and back.
            # The socket serialises sends; a failed send queues Evt17 for the DUL as pynetdicom's does.
            dul.socket.send(_p_data_tf([(context_id, b"\x03" + command)]))
            return
        pdata = P_DATA()
        pdata.presentation_data_value_list = []
        pdata.presentation_data_value_list.append((context_id, b"\x03" + command))
        dul.send_pdu(pdata)


def encode_p_data_tf(primitive: P_DATA) -> bytes:
    """A P-DATA-TF PDU for `primitive` (what pynetdicom's DT-1 sends, without building PDU objects)."""
    return _p_data_tf(primitive.presentation_data_value_list)


def _p_data_tf(pdvs: list[tuple[int, bytes]]) -> bytes:
    """A P-DATA-TF PDU of (context id, message control header + data) values."""
    items = b"".join(_PDV_ITEM.pack(len(data) + 1, context_id) + bytes(data) for context_id, data in pdvs)
    return _PDU_HEADER.pack(0x04, len(items)) + items
