"""The receive path's socket reads, on a real socket pair: exact sizes whatever the sender's write boundaries;
how the DUL thread waits for the next PDU (looking for it a moment before it sleeps)."""

from __future__ import annotations

import os
import queue
import socket
import threading
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from pynetdicom import AE
from pynetdicom._globals import MODE_ACCEPTOR

from suite_daemon.dicom import transport
from suite_daemon.dicom.transport import _READ_AHEAD, LeanAssociation, LeanDUL, LeanSocket

_PDU = b"\x04\x00\x00\x00\x00\x02ab"
"""A P-DATA-TF header and two bytes of its body: what the peer sends."""


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


def test_a_read_that_does_not_block_says_whether_anything_came_and_keeps_it_for_the_next_read() -> None:
    ours, theirs = socket.socketpair()
    with ours:
        lean = _lean_socket(ours)
        assert not lean.read_nowait()  # nothing sent yet
        theirs.sendall(_PDU)
        assert lean.read_nowait() and lean.buffered
        assert bytes(lean.recv(8)) == _PDU
        theirs.close()
        assert lean.read_nowait()  # the peer closed: the next read says so
        assert bytes(lean.recv(6)) == b""


@pytest.fixture
def dul_in_sta6() -> Iterator[tuple[LeanDUL, socket.socket]]:
    """The DUL of an acceptor association in the data-transfer state, on one end of a socket pair; the other
    end is the peer. Its threads are never started: the test calls its wait itself."""
    ours, theirs = socket.socketpair()
    assoc = LeanAssociation(AE(), MODE_ACCEPTOR)
    assoc.set_socket(LeanSocket(assoc, client_socket=ours))
    dul = assoc.dul
    assert isinstance(dul, LeanDUL)
    dul.state_machine.current_state = "Sta6"
    with ours, theirs:
        yield dul, theirs
    os.close(dul._wake_r)
    os.close(dul._wake_w)


def test_a_pdu_already_sent_is_found_without_sleeping_and_the_next_wait_looks_again(
    dul_in_sta6: tuple[LeanDUL, socket.socket],
) -> None:
    dul, peer = dul_in_sta6
    peer.sendall(_PDU)
    dul._wait()
    assert dul._readable and dul._spin_worthwhile
    assert bytes(dul.socket.recv(8)) == _PDU  # type: ignore[union-attr]


def test_a_look_that_finds_nothing_makes_the_thread_sleep_until_the_peer_sends_promptly_again(
    dul_in_sta6: tuple[LeanDUL, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    dul, peer = dul_in_sta6
    monkeypatch.setattr(transport, "SPIN_S", 0.001)
    dul._wait()  # looks 1 ms, then sleeps in select until its idle timeout: nothing came
    assert not dul._readable and not dul._spin_worthwhile
    monkeypatch.setattr(transport, "SPIN_S", 30.0)  # any wait a loaded machine may take counts as prompt
    dul._wait()  # does not look (it would for 30 s): sleeps in select only, and nothing came
    assert not dul._readable and not dul._spin_worthwhile
    peer.sendall(_PDU)
    dul._wait()  # woken by the PDU within SPIN_S of the wait: worth looking again
    assert dul._readable and dul._spin_worthwhile


def test_a_peer_that_closes_while_the_thread_looks_ends_the_wait_with_a_short_read(
    dul_in_sta6: tuple[LeanDUL, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    dul, peer = dul_in_sta6
    monkeypatch.setattr(transport, "SPIN_S", 30.0)
    closer = threading.Timer(0.05, peer.shutdown, (socket.SHUT_RDWR,))
    closer.start()
    dul._wait()
    closer.join()
    assert dul._readable and dul._spin_worthwhile
    assert bytes(dul.socket.recv(6)) == b""  # type: ignore[union-attr]


def test_only_as_many_threads_look_as_the_machine_has_cores_to_spare(
    dul_in_sta6: tuple[LeanDUL, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    dul, _ = dul_in_sta6
    spinners = threading.BoundedSemaphore(1)
    monkeypatch.setattr(transport, "_spinners", spinners)
    monkeypatch.setattr(transport, "SPIN_S", 30.0)  # a look would take 30 s and end in a miss
    assert spinners.acquire(blocking=False)  # another association's thread is looking
    dul._wait()  # sleeps in select at once, until its idle timeout
    assert not dul._readable and dul._spin_worthwhile
    spinners.release()


def test_no_look_outside_the_data_transfer_state(
    dul_in_sta6: tuple[LeanDUL, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    dul, _ = dul_in_sta6
    monkeypatch.setattr(transport, "SPIN_S", 30.0)
    dul.state_machine.current_state = "Sta2"  # waiting for the A-ASSOCIATE-RQ
    dul._wait()
    assert not dul._readable and dul._spin_worthwhile
