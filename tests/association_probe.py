"""An A-ASSOCIATE-RQ sent over a plain socket and the answer read back, for tests of who may associate.

pynetdicom's requestor cannot be trusted to report a fast rejection: when the A-ASSOCIATE-RJ arrives and
its DUL thread closes the connection before the ACSE thread has checked that the socket is connected, it
aborts without reading the answer (`is_rejected` stays False, `acceptor.primitive` None). Under load the
daemon's rejection is fast enough to hit that (seen in `make test`). Here the answer PDU is read from the
socket itself: the same bytes on the wire, with no thread in between.
"""

from __future__ import annotations

import socket
import struct

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, ImplementationClassUIDNotification, MaximumLengthNotification
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # made at import by pynetdicom

_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
_A_ASSOCIATE_AC, _A_ASSOCIATE_RJ, _A_RELEASE_RQ = 0x02, 0x03, 0x05
_A_ABORT = 0x07
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
RELEASE_RQ = bytes([_A_RELEASE_RQ, 0]) + struct.pack(">I", 4) + bytes(4)


def _request(calling: str, called: str, abstract_syntaxes: tuple[str, ...] = (Verification,)) -> bytes:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = _APPLICATION_CONTEXT
    primitive.calling_ae_title = calling
    primitive.called_ae_title = called
    contexts = []
    for number, abstract_syntax in enumerate(abstract_syntaxes):
        context = build_context(abstract_syntax, _EXPLICIT_LE)
        context.context_id = 2 * number + 1
        contexts.append(context)
    primitive.presentation_context_definition_list = contexts
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = 16382
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
    primitive.user_information = [max_length, implementation]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def _read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    header = _read_exactly(sock, 6)
    pdu_type, length = header[0], struct.unpack(">I", header[2:6])[0]
    return pdu_type, _read_exactly(sock, length)


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def request_association(
    port: int, calling: str, called: str, bind_host: str = "127.0.0.1", timeout_s: float = 10.0
) -> tuple[int, int, int] | None:
    """Ask 127.0.0.1:`port` for a Verification association. Returns the A-ASSOCIATE-RJ's (result, source,
    reason), or None if it was accepted (then released at once)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s, source_address=(bind_host, 0)) as sock:
        sock.sendall(_request(calling, called))
        pdu_type, body = _read_pdu(sock)
        if pdu_type == _A_ASSOCIATE_RJ:
            return body[1], body[2], body[3]
        if pdu_type != _A_ASSOCIATE_AC:
            raise AssertionError(f"answered with PDU type {pdu_type:#04x}")
        sock.sendall(RELEASE_RQ)
        _read_pdu(sock)  # A-RELEASE-RP
        return None


def open_association(
    port: int, calling: str, called: str, *abstract_syntaxes: str, timeout_s: float = 10.0
) -> socket.socket:
    """An association over a plain socket, its presentation contexts numbered 1, 3, 5... in the order given
    (explicit VR little endian), for tests that send what a well-behaved requestor would not."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    sock.sendall(_request(calling, called, abstract_syntaxes))
    pdu_type, _ = _read_pdu(sock)
    if pdu_type != _A_ASSOCIATE_AC:
        sock.close()
        raise AssertionError(f"answered with PDU type {pdu_type:#04x}")
    return sock


def p_data(context_id: int, control: int, data: bytes) -> bytes:
    """A P-DATA-TF PDU holding one presentation data value (`control`: 0x01 command, 0x02 last fragment)."""
    item = struct.pack(">IBB", len(data) + 2, context_id, control) + data
    return bytes([0x04, 0]) + struct.pack(">I", len(item)) + item


def command_set(elements: dict[int, bytes]) -> bytes:
    """A command set (implicit VR little endian) of group 0000 elements given by element number and raw value."""

    def element(elem: int, value: bytes) -> bytes:
        value = value + b"\0" if len(value) % 2 else value
        return struct.pack("<HHI", 0, elem, len(value)) + value

    body = b"".join(element(elem, value) for elem, value in sorted(elements.items()))
    return element(0x0000, struct.pack("<I", len(body))) + body


def c_store_command(sop_class: bytes, sop_instance: bytes, message_id: int = 1) -> bytes:
    """A C-STORE-RQ announcing a data set; the UIDs are raw bytes so that tests can send ones a valid
    requestor never would."""
    us = struct.Struct("<H").pack
    return command_set(
        {
            0x0002: sop_class,
            0x0100: us(0x0001),
            0x0110: us(message_id),
            0x0700: us(0),
            0x0800: us(0),
            0x1000: sop_instance,
        }
    )


def read_answer(sock: socket.socket) -> tuple[int, bytes] | None:
    """The next PDU the daemon sends, or None once it has closed the connection."""
    try:
        return _read_pdu(sock)
    except ConnectionError:
        return None


def abort_or_close(sock: socket.socket) -> bool:
    """Whether the daemon aborts the association (PDUs before the A-ABORT are skipped); False if it just closes."""
    while (answer := read_answer(sock)) is not None:
        if answer[0] == _A_ABORT:
            return True  # a requestor closes the connection on an A-ABORT
    return False


def c_store_status(sock: socket.socket) -> int:
    """The status of the C-STORE-RSP the daemon answers next (its command set in one P-DATA-TF)."""
    answer = read_answer(sock)
    if answer is None or answer[0] != 0x04:
        raise AssertionError(f"expected a P-DATA-TF, got {answer and answer[0]}")
    body = answer[1]
    command = body[6 : 4 + struct.unpack(">I", body[:4])[0]]  # one PDV: length, context id, control header
    pos = 0
    while pos < len(command):
        _, elem, length = struct.unpack_from("<HHI", command, pos)
        if elem == 0x0900:
            return int(struct.unpack_from("<H", command, pos + 8)[0])
        pos += 8 + length
    raise AssertionError("no status in the response")
