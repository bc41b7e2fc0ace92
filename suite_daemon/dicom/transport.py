"""A leaner receive path under pynetdicom's association, ACSE and DIMSE logic.

Stock pynetdicom polls: its DUL thread and its association thread each sleep 1 ms whenever idle,
reads sockets 4 KiB at a time, copies every PDU three times and builds PDU objects for each P-DATA.
Here, with the same state machine and DIMSE code:

- the DUL thread blocks in `select` on the socket and a wake-up pipe (written, while it sleeps, when
  another thread queues a PDU to send), so a queued PDU leaves at once; while the peer keeps sending
  without pause, it first looks for the next PDU for a moment before it sleeps (`LeanDUL._spin`);
- the association thread blocks on an event the DUL sets when something waits for it, instead of
  polling; complete C-STOREs are served on the DUL thread itself (`fast_dimse.LeanDIMSE`);
- PDUs are read ahead, up to 16 KiB per `recv` (a small object's PDUs and the next header usually
  come in one or two), and a larger PDU with `recv_into` into its own buffer; P-DATA-TF PDVs in the
  data-transfer state go straight to DIMSE as memoryviews (no PDU objects, no copies), and P-DATA is sent
  without PDU objects;
- TCP_NODELAY on, larger receive buffers, and TCP_QUICKACK re-armed after each read so a sender
  with Nagle's algorithm on (DCMTK as shipped) is not stalled by delayed ACKs; kernel receive/send
  timeouts so a peer that stops mid-PDU cannot hold a thread.

Only the data-transfer state's P-DATA takes these shortcuts; every other PDU and state goes through
pynetdicom's state machine as before.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import ssl
import struct
import threading
import time
from datetime import datetime
from typing import Any, cast

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from suite_daemon.dicom.fast_dimse import LeanDIMSE, encode_p_data_tf
from suite_daemon.dicom.filing import Filer
from suite_daemon.dicom.spool import Spool

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)
_RCVBUF = 4 * 1024 * 1024
_FIRST_ALLOCATION = 16 * 1024 * 1024
_READ_AHEAD = 16 * 1024
"""A small object's PDUs fit; a large PDU is read into its own buffer, with at most this much copied twice."""
_IDLE_WAIT_S = 0.05
_CONTROL_PDU_MAX = 1024 * 1024
"""Largest association, release or abort PDU taken (an A-ASSOCIATE-RQ proposing every SOP class is ~40 KB)."""
_PDV_CHUNK = 16 * 1024 * 1024
"""A P-DATA-TF larger than this (possible when no maximum is advertised) is handed to DIMSE in pieces of this
size as it arrives, so an association never holds more of it in memory."""
_PDU_TIME_FLOOR_S = 60.0
_PDU_MIN_RATE = 1024 * 1024
"""A PDU must arrive within the network timeout plus one second per MiB: a peer that trickles bytes, each
within the socket's receive timeout, cannot hold a thread (or, before association, a slot) for long."""
_PDU_HEADER = struct.Struct(">BxL")
_PDV_HEADER = struct.Struct(">LB")
SPIN_S = 200e-6
"""How long the DUL thread looks for a streaming peer's next PDU before it sleeps in `select` (`LeanDUL._spin`)."""


def _cores() -> int:
    """The cores this process may run on (its affinity, e.g. systemd's `CPUAffinity=`)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_spinners = threading.BoundedSemaphore(max(1, _cores() - 1))
"""At most this many DUL threads spin at once: a core is left for the senders and the rest of the daemon."""


def _rearm_quickack(sock: socket.socket) -> None:
    """After a read that got data: the kernel falls back to delayed ACKs unless TCP_QUICKACK is set again."""
    if _QUICKACK is not None and not isinstance(sock, ssl.SSLSocket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)


class LeanSocket(AssociationSocket):
    """Reads ahead (a small PDU and the next one's header usually come in one `recv`), re-arming
    TCP_QUICKACK after each read; sends serialised (two threads may send)."""

    _send_lock = threading.Lock()  # replaced per instance in __init__

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._send_lock = threading.Lock()
        self._ahead = bytearray()
        """Bytes read from the socket but not asked for yet."""
        self._scratch = bytearray(_READ_AHEAD)
        self.deadline: float | None = None
        """When set (time.monotonic()), reads after it raise TimeoutError."""

    @property
    def buffered(self) -> bool:
        return bool(self._ahead)

    @property
    def ready(self) -> bool:
        return bool(self._ahead) or bool(super().ready)

    def send(self, bytestream: bytes) -> None:
        with self._send_lock:
            super().send(bytestream)

    def recv(self, nr_bytes: int) -> bytearray:
        """`nr_bytes` from the socket (fewer only if the peer closed)."""
        ahead = self._ahead
        if len(ahead) < nr_bytes:
            if nr_bytes > _READ_AHEAD:
                return self._recv_large(nr_bytes)
            self._read_ahead(nr_bytes)
        out = ahead[:nr_bytes]
        del ahead[:nr_bytes]
        return out

    def _recv_into(self, view: memoryview | bytearray) -> int:
        """One read from the socket into `view` (within the PDU's deadline), then TCP_QUICKACK re-armed."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimeoutError("the PDU did not arrive in time")
        sock = cast(socket.socket, self.socket)
        n = sock.recv_into(view)
        if n:
            _rearm_quickack(sock)
        return n

    def _read_ahead(self, nr_bytes: int) -> None:
        scratch = self._scratch
        while len(self._ahead) < nr_bytes:
            n = self._recv_into(scratch)
            if not n:
                return
            self._ahead += memoryview(scratch)[:n]

    def read_nowait(self) -> bool:
        """One read that does not block, appended to what was read ahead. False when nothing had arrived; True
        also when the peer has closed or the read failed (the next `recv` reports it)."""
        sock = self.socket
        if sock is None:  # closed: the next `recv` reports it
            return True
        try:
            n = sock.recv_into(self._scratch, 0, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        if n:
            self._ahead += memoryview(self._scratch)[:n]
            _rearm_quickack(sock)
        return True

    def _recv_large(self, nr_bytes: int) -> bytearray:
        """Read exactly up to `nr_bytes` into one buffer, which grows as data arrives, so a bogus PDU length
        cannot make us allocate gigabytes up front."""
        got = len(self._ahead)
        buf = bytearray(max(got, min(nr_bytes, _FIRST_ALLOCATION)))
        buf[:got] = self._ahead
        self._ahead.clear()
        while got < nr_bytes:
            if got == len(buf):
                buf.extend(bytes(min(nr_bytes - got, len(buf))))
            with memoryview(buf) as view:
                n = self._recv_into(view[got:])
            if not n:
                del buf[got:]
                return buf
            got += n
            self._arriving()
        return buf

    def _arriving(self) -> None:
        """A long PDU is still arriving: not idle (its own deadline bounds a slow sender)."""
        timer = getattr(self.assoc.dul, "_idle_timer", None)
        if timer is not None:
            timer.restart()

    def recv_exactly_into(self, view: memoryview) -> bool:
        """Fill `view` from what was read ahead, then from the socket; False if the peer closed first."""
        got = min(len(self._ahead), len(view))
        view[:got] = self._ahead[:got]
        del self._ahead[:got]
        while got < len(view):
            n = self._recv_into(view[got:])
            if not n:
                return False
            got += n
            self._arriving()
        return True

    def drain(self) -> bool:
        """Drop what is waiting to be read: what was read ahead, else one read from the socket (call it when
        `ready`: it may block otherwise); False once the peer has closed."""
        if self._ahead:
            self._ahead.clear()
            return True
        try:
            return bool(cast(socket.socket, self.socket).recv_into(self._scratch))
        except OSError:
            return False


def split_pdvs(body: bytearray) -> list[tuple[int, memoryview]]:
    """The presentation data values of a P-DATA-TF PDU body as (context id, message control header + data)."""
    view = memoryview(body)
    items: list[tuple[int, memoryview]] = []
    pos, end = 0, len(body)
    while pos < end:
        if pos + 6 > end:
            raise ValueError("truncated PDV item")
        length, context_id = _PDV_HEADER.unpack_from(body, pos)
        if length < 2 or pos + 4 + length > end:
            raise ValueError("invalid PDV item length")
        items.append((context_id, view[pos + 5 : pos + 4 + length]))
        pos += 4 + length
    return items


class LeanDUL(DULServiceProvider):
    def __init__(self, assoc: Association) -> None:
        super().__init__(assoc)
        self.activity = threading.Event()
        """Set after every step that may have queued something for the association thread."""
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        self._pipe_open = True
        self._pipe_lock = threading.Lock()
        self._advertised_max: int | None = None
        self._sent_directly = False
        self._sleeping = False
        self._readable = False
        self._spin_worthwhile = True
        """Whether the peer's last PDU came within `SPIN_S` of the wait for it (see `_spin`)."""

    def send_pdu(self, primitive: Any) -> None:
        super().send_pdu(primitive)
        self._wake()

    def kill_dul(self) -> None:
        super().kill_dul()
        self._wake()

    def _wake(self) -> None:
        if self._sleeping:
            with self._pipe_lock:  # not after `run_reactor` closed the pipe: its fd may be a file's by now
                if self._pipe_open:
                    with contextlib.suppress(OSError):
                        os.write(self._wake_w, b"\0")

    def _process_recv_primitive(self) -> bool:
        try:
            primitive = self.to_provider_queue.queue[0]
        except IndexError:
            return False
        if isinstance(primitive, P_DATA) and self.state_machine.current_state == "Sta6" and self.event_queue.empty():
            # Sta6 + Evt9 is DT-1 (send the P-DATA-TF, stay in Sta6): done here without PDU objects.
            self.to_provider_queue.get(False)
            cast(AssociationSocket, self.socket).send(encode_p_data_tf(primitive))
            self._sent_directly = True
            return True
        return bool(super()._process_recv_primitive())

    def _read_pdu_data(self) -> None:
        sock = cast(LeanSocket, self.socket)
        state = self.state_machine.current_state
        if state == "Sta13":
            # The association is being aborted: what the peer still sends is dropped (it may be the rest of a
            # PDU refused below) until it closes the connection or the ARTIM timer expires.
            if not sock.drain():
                self.event_queue.put("Evt17")
            return
        sock.deadline = time.monotonic() + float(self.assoc.network_timeout or _PDU_TIME_FLOOR_S)
        try:
            header = sock.recv(6)
        except (OSError, TimeoutError):
            self.event_queue.put("Evt17")
            return
        if len(header) != 6:
            self.event_queue.put("Evt17")
            return
        pdu_type, pdu_length = _PDU_HEADER.unpack(header)
        streamable = state == "Sta6" and self.event_queue.empty()
        if not 0x01 <= pdu_type <= 0x07 or pdu_length > self._pdu_length_max(pdu_type, streamable):
            self.event_queue.put("Evt19")  # A-ABORT; the PDU's body is not read
            return
        sock.deadline += pdu_length / _PDU_MIN_RATE
        try:
            if pdu_type == 0x04 and pdu_length > _PDV_CHUNK and streamable:
                self._stream_p_data(sock, pdu_length)
                return
            body = sock.recv(pdu_length)
        except (OSError, TimeoutError):
            self.event_queue.put("Evt17")
            return
        finally:
            sock.deadline = None
        if len(body) != pdu_length:
            self.event_queue.put("Evt17")
            return
        if pdu_type == 0x04 and streamable:
            # Sta6 + Evt10 is DT-2 (hand the P-DATA to DIMSE, stay in Sta6): done here without PDU objects.
            try:
                items = split_pdvs(body)
            except ValueError:
                self.event_queue.put("Evt19")
                return
            self._to_dimse(items)
            return
        try:
            pdu, event = self._decode_pdu(header + body)
        except Exception:
            self.event_queue.put("Evt19")
            return
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)

    def _to_dimse(self, items: list[tuple[int, memoryview]]) -> None:
        """The P-DATA's PDVs handed to DIMSE, without PDU objects."""
        primitive = P_DATA()
        primitive.presentation_data_value_list = []
        primitive.presentation_data_value_list.extend(items)  # type: ignore[arg-type]
        self.assoc.dimse.receive_primitive(primitive)

    def _pdu_length_max(self, pdu_type: int, streamable: bool) -> int:
        """The largest PDU body taken: P-DATA-TF up to the maximum we advertised (when unlimited: any size
        where it can be streamed to DIMSE, else `_PDV_CHUNK`), every other PDU up to 1 MiB."""
        if pdu_type != 0x04:
            return _CONTROL_PDU_MAX
        advertised = self._advertised_max
        if advertised is None:  # set before the DUL starts; read once (a property chain costs ~1 us per PDU)
            advertised = self._advertised_max = int(self.assoc.acceptor.maximum_length or 0)
        if advertised:
            return advertised
        return 0xFFFFFFFF if streamable else _PDV_CHUNK

    def _stream_p_data(self, sock: LeanSocket, pdu_length: int) -> None:
        """A P-DATA-TF too large to hold (only in the data-transfer state, with no maximum advertised): each
        PDV handed to DIMSE in pieces of up to `_PDV_CHUNK` as it arrives, every piece but a PDV's last with
        the last-fragment bit cleared."""
        left = pdu_length
        while left:
            head = sock.recv(6)
            if len(head) != 6:
                self.event_queue.put("Evt17")
                return
            item_length, context_id = _PDV_HEADER.unpack_from(head)
            control = head[5]
            if item_length < 2 or 4 + item_length > left:
                self.event_queue.put("Evt19")
                return
            left -= 4 + item_length
            data_left = item_length - 2
            while True:
                n = min(data_left, _PDV_CHUNK)
                data_left -= n
                piece = bytearray(1 + n)
                piece[0] = control if not data_left else control & ~0x02
                with memoryview(piece) as view:
                    if not sock.recv_exactly_into(view[1:]):
                        self.event_queue.put("Evt17")
                        return
                self._to_dimse([(context_id, memoryview(piece))])
                if not data_left or not self.event_queue.empty() or self._kill_thread:
                    break
            if not self.event_queue.empty() or self._kill_thread:
                return  # DIMSE refused what it got (an abort follows), or the association is over

    def _wait(self) -> None:
        wrapper = self.socket
        sock = wrapper.socket if wrapper is not None else None
        if sock is None or sock.fileno() < 0:
            self._sleep_briefly()
            return
        lean = cast(LeanSocket, wrapper)
        if lean.buffered or (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            self._readable = True
            return
        if self._spin_worthwhile and not isinstance(sock, ssl.SSLSocket) and self._spin(lean):
            self._readable = True
            return
        # `_wake` writes to the pipe only while we sleep: flag first, then look at the queue once more.
        self._sleeping = True
        try:
            if self.to_provider_queue.queue:
                return
            waitables: list[socket.socket | int] = [sock, self._wake_r]
            slept = time.perf_counter()
            readable, _, _ = select.select(waitables, [], [], _IDLE_WAIT_S)
        except (OSError, ValueError):
            self._sleep_briefly()
            return
        finally:
            self._sleeping = False
        if self._wake_r in readable:
            with contextlib.suppress(OSError):
                os.read(self._wake_r, 4096)
        self._readable = sock in readable
        if self._readable and not self._spin_worthwhile:
            self._spin_worthwhile = time.perf_counter() - slept < SPIN_S

    def _spin(self, sock: LeanSocket) -> bool:
        """Look for the peer's next PDU for up to `SPIN_S` before sleeping; True once something was read.

        A sender that streams objects (a CT series, a C-arm's runs) answers each C-STORE response within
        a fraction of a millisecond. Sleeping in `select` meanwhile and being woken when it sends cost
        a machine of this kind 5-12 % of the small-object rate (docs/performance.md, "Looking before
        sleeping"). Only while that is worth it: after a look that found nothing, the thread sleeps at
        once until the peer again sends within `SPIN_S` of the wait. The thread yields the core on
        every look, and only `_spinners` threads look at a time. (Not for TLS, whose reads cannot be
        made non-blocking one by one.)"""
        if self.state_machine.current_state != "Sta6" or not _spinners.acquire(blocking=False):
            return False
        try:
            until = time.perf_counter() + SPIN_S
            while not self.to_provider_queue.queue and not self._kill_thread:
                if sock.read_nowait():
                    return True
                if time.perf_counter() > until:
                    self._spin_worthwhile = False
                    return False
                os.sched_yield()
            return False
        finally:
            _spinners.release()

    def _is_transport_event(self) -> bool:
        # Read only after `_wait`'s select saw data (no second readiness check per PDU); Sta13 (waiting
        # for the connection to close) stays with pynetdicom's handling.
        if self.state_machine.current_state == "Sta13":
            return bool(super()._is_transport_event())
        if self._readable:
            self._readable = False
            self._read_pdu_data()
            return True
        return False

    def _notify_association(self) -> None:
        """Wake the association thread only when something waits for it (a message, an ACSE primitive,
        a state change); C-STOREs are served on this thread."""
        if (
            self.to_user_queue.queue
            or self.assoc.dimse.msg_queue.queue
            or self.state_machine.current_state != "Sta6"
            or self._kill_thread
        ):
            self.activity.set()

    def _sleep_briefly(self) -> None:
        with contextlib.suppress(OSError):
            select.select([self._wake_r], [], [], 0.005)
            os.read(self._wake_r, 4096)

    def run_reactor(self) -> None:
        try:
            self._run()
        finally:
            dimse = self.assoc.dimse
            if isinstance(dimse, LeanDIMSE):
                dimse.close()
            if self.assoc.requestor.primitive is None:
                # Ended before an A-ASSOCIATE-RQ came (refused, or the peer left): the association thread
                # waits for one up to the ACSE timeout; None is what it gets when that expires.
                cast(Any, self.to_user_queue).put(None)
            self.activity.set()
            with self._pipe_lock:
                self._pipe_open = False
                os.close(self._wake_r)
                os.close(self._wake_w)

    def _run(self) -> None:
        self._idle_timer.start()
        while True:
            if not self.assoc._dul_ready.is_set():
                self.assoc._dul_ready.set()
            if self._kill_thread:
                return
            if self.artim_timer.expired:
                self.event_queue.put("Evt18")
            received = False
            try:
                if self._process_recv_primitive():
                    received, self._sent_directly = self._sent_directly, False
                elif self._is_transport_event():
                    self._idle_timer.restart()
                    received = True
            except Exception:
                self._abort_hard()
                return
            if not self.event_queue.queue:  # this thread is the queue's only reader
                if received:
                    self._notify_association()
                else:
                    self._wait()
                continue
            self.state_machine.do_action(self.event_queue.get(block=False))
            self._notify_association()

    def _abort_hard(self) -> None:
        # As pynetdicom does: bypass the state machine, send A-ABORT and stop both reactors.
        abort_pdu = A_ABORT_RQ()
        abort_pdu.source = 0x02
        abort_pdu.reason_diagnostic = 0x00
        with contextlib.suppress(Exception):
            cast(AssociationSocket, self.socket).send(abort_pdu.encode())
        self.assoc.is_aborted = True
        self.assoc.is_established = False
        self.assoc._kill = True
        self._kill_thread = True


class LeanAssociation(Association):
    def __init__(self, ae: Any, mode: str) -> None:
        super().__init__(ae, mode)
        self.dul = LeanDUL(self)
        self.dimse = LeanDIMSE(self)
        # The timeout setters configure the DUL's timers: apply them to the new DUL.
        self.acse_timeout = self.ae.acse_timeout
        self.network_timeout = self.ae.network_timeout

    def _serve_request(self, msg: Any, context_id: int) -> None:
        """pynetdicom's, then the request's spool stream discarded if it was not stored: pynetdicom may answer a
        request by aborting without calling the store handler (which otherwise discards it)."""
        try:
            super()._serve_request(msg, context_id)
        finally:
            stream = getattr(msg, "suite_stream", None)
            if stream is not None and not stream.committed:
                stream.discard()

    def _run_reactor(self) -> None:
        """pynetdicom's acceptor loop, woken by the DUL instead of polling every millisecond."""
        self._is_paused = False
        activity = cast(LeanDUL, self.dul).activity
        served = False
        while not self._kill:
            if not served:
                activity.wait(_IDLE_WAIT_S)
                if self._kill:
                    return
            activity.clear()
            served = False
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False

            context_id, msg = self.dimse.get_msg(block=False)
            if msg:
                self._serve_request(msg, cast(int, context_id))
                served = True

            if self.is_established and self.acse.is_release_requested():
                self.acse.send_release(is_response=True)
                self.is_released = True
                self.is_established = False
                evt.trigger(self, evt.EVT_RELEASED, {})
                self.kill()
                return

            if self.acse.is_aborted():
                self.dul.receive_pdu(wait=False)
                self.is_aborted = True
                self.is_established = False
                evt.trigger(self, evt.EVT_ABORTED, {})
                self.kill()
                return

            if not self.dul.is_alive():
                self.kill()
                return

            if self.dul.idle_timer_expired():
                self.abort()
                self.kill()
                return


class LeanRequestHandler(RequestHandler):
    def _create_association(self) -> Association:
        from pynetdicom._globals import MODE_ACCEPTOR

        assoc = LeanAssociation(self.ae, MODE_ACCEPTOR)
        assoc._server = self.server
        assoc.name = f"AcceptorThread@{datetime.now():%Y%m%d%H%M%S}"
        sock = LeanSocket(assoc, client_socket=cast(socket.socket, self.request))
        assoc.set_socket(sock)

        assoc.acceptor.maximum_length = self.ae.maximum_pdu_size
        assoc.acceptor.ae_title = self.server.ae_title
        assoc.acceptor.address_info = self.local
        assoc.acceptor.implementation_class_uid = self.ae.implementation_class_uid
        assoc.acceptor.implementation_version_name = self.ae.implementation_version_name
        # pynetdicom deep-copies the ~170 supported contexts for every association (18 ms here); negotiation
        # only reads them and builds new result contexts, so the server's list is shared instead.
        assoc.acceptor.supported_contexts = list(self.server.contexts)
        assoc.requestor.address_info = self.remote

        for event in self.server._handlers:
            if event.is_intervention and self.server._handlers[event]:
                assoc.bind(event, *self.server._handlers[event])
            elif isinstance(event, evt.NotificationEvent):
                for handler in self.server._handlers[event]:
                    handler = cast(evt._HandlerBase, handler)
                    assoc.bind(event, handler[0], handler[1])
        return assoc


class LeanAssociationServer(ThreadedAssociationServer):
    """Tunes accepted sockets; the TLS handshake runs in the connection's thread, with a deadline."""

    daemon_threads = True
    handshake_timeout_s = 10.0
    spool: Spool | None = None
    """Set by the receiver: large data sets are streamed into it while they arrive."""
    filer: Filer | None = None
    """Set by the receiver: stores served on the DUL thread file their object there after the answer."""

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        sock = cast(socket.socket, self.socket)
        client, address = sock.accept()
        with contextlib.suppress(OSError):
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        return client, address  # TLS is set up in the connection's own thread (finish_request)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """In the connection's thread: the TLS handshake (with a deadline), socket timeouts, then pynetdicom."""
        client = cast(socket.socket, request)
        if self.ssl_context:
            client.settimeout(self.handshake_timeout_s)
            try:
                client = self.ssl_context.wrap_socket(client, server_side=True)
            except (OSError, ssl.SSLError):
                client.close()
                return
            client.settimeout(None)
        # A peer that stops in the middle of a PDU must not hold a thread forever: kernel-level timeouts
        # (a Python socket timeout would add a poll() before every read).
        if self.ae.network_timeout:
            seconds = float(self.ae.network_timeout)
            timeval = struct.pack("ll", int(seconds), int((seconds % 1) * 1_000_000))
            with contextlib.suppress(OSError):
                client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
                client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        super().finish_request(client, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A failed TLS handshake or a reset connection: nothing to report on stderr.
        pass
