"""The receive path's socket reads, on a real socket pair: exact sizes whatever the sender's write boundaries."""

from __future__ import annotations

import os
import queue
import socket
import threading
from types import SimpleNamespace

from suite_daemon.dicom.transport import _READ_AHEAD, LeanSocket


def _lean_socket(sock: socket.socket) -> LeanSocket:
    association = SimpleNamespace(dul=SimpleNamespace(event_queue=queue.Queue()))
    return LeanSocket(association, client_socket=sock)


def test_reads_return_exactly_what_is_asked_across_any_write_boundaries() -> None:
    stream = os.urandom(3 * _READ_AHEAD + 12345)
    sizes = [6, 136, 6, 8608, 6, 2 * _READ_AHEAD + 100, 6, 1, 5000]  # small, large and tiny reads
    sizes.append(len(stream) - sum(sizes))
    ours, theirs = socket.socketpair()
    with ours, theirs:

        def send_in_odd_pieces() -> None:
            pos, step = 0, 1
            while pos < len(stream):
                theirs.sendall(stream[pos : pos + step])
                pos += step
                step = step * 7 % 70001 + 1

        sender = threading.Thread(target=send_in_odd_pieces)
        sender.start()
        lean = _lean_socket(ours)
        got = [bytes(lean.recv(n)) for n in sizes]
        sender.join()
    expected, pos = [], 0
    for n in sizes:
        expected.append(stream[pos : pos + n])
        pos += n
    assert got == expected


def test_what_was_read_ahead_counts_as_ready_and_a_closed_peer_gives_a_short_read() -> None:
    ours, theirs = socket.socketpair()
    with ours:
        lean = _lean_socket(ours)
        theirs.sendall(b"\x04\x00\x00\x00\x00\x02ab" + b"tail")
        theirs.close()
        assert bytes(lean.recv(6)) == b"\x04\x00\x00\x00\x00\x02"
        assert lean.buffered and lean.ready
        assert bytes(lean.recv(2)) == b"ab"
        assert bytes(lean.recv(10)) == b"tail"  # the peer closed: fewer than asked
        assert not lean.buffered
