"""Framers and codecs without I/O: any split of a stream gives the same frames; garbage never decodes."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.alaris_asena import codec as asena
from drivers.checksum import crc16_ccitt_false
from drivers.framing import DelimitedFramer, LineFramer
from drivers.newera_pump import codec as newera
from drivers.ptw_diamentor import codec as ptw
from drivers.session import ChecksumError, ProtocolError
from drivers.simulator import GARBAGE_ALPHABET

# Published check values of CRC-16/CCITT-FALSE (the "123456789" check of the CRC catalogue) and others.
CRC_VECTORS = [(b"123456789", 0x29B1), (b"", 0xFFFF), (b"A", 0xB915)]


def test_crc16_ccitt_false_published_vectors() -> None:
    for data, expected in CRC_VECTORS:
        assert crc16_ccitt_false(data) == expected


def split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    pieces, last = [], 0
    for point in [*points, len(stream)]:
        pieces.append(stream[last:point])
        last = point
    return pieces


printable = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40)
asena_bodies = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="!|"), min_size=1, max_size=60
)


@settings(deadline=None)  # timing of a loaded CI machine is not what is tested
@given(lines=st.lists(printable, min_size=1, max_size=10), cuts=st.lists(st.integers(0, 10_000), max_size=30))
def test_line_framer_any_split_same_frames(lines: list[str], cuts: list[int]) -> None:
    stream = b"".join(line.encode() + b"\r\n" for line in lines)
    framer = LineFramer(b"\r\n", max_len=64)
    frames = [f.payload for piece in split(stream, cuts) for f in framer.feed(piece, 0.0)]
    assert frames == [line.encode() for line in lines]


@settings(deadline=None)  # timing of a loaded CI machine is not what is tested
@given(bodies=st.lists(asena_bodies, min_size=1, max_size=10), cuts=st.lists(st.integers(0, 10_000), max_size=30))
def test_asena_framer_any_split_same_frames(bodies: list[str], cuts: list[int]) -> None:
    stream = b"".join(asena.encode(body) for body in bodies)
    framer = DelimitedFramer(asena.START, asena.END, max_len=128)
    decoded = [asena.decode(f.payload) for piece in split(stream, cuts) for f in framer.feed(piece, 0.0)]
    assert decoded == [body.split("^") for body in bodies]


@settings(max_examples=200, deadline=None)
@given(
    bodies=st.lists(asena_bodies, min_size=1, max_size=8),
    garbage=st.lists(st.binary(max_size=30), min_size=9, max_size=9),
    cuts=st.lists(st.integers(0, 10_000), max_size=20),
)
def test_asena_garbage_never_yields_a_false_frame(bodies: list[str], garbage: list[bytes], cuts: list[int]) -> None:
    """Arbitrary bytes (delimiters included) between frames: only the real frames decode."""
    stream = b"".join(g + asena.encode(b) for g, b in zip(garbage, bodies, strict=False)) + garbage[-1]
    framer = DelimitedFramer(asena.START, asena.END, max_len=128)
    decoded = []
    for piece in split(stream, cuts):
        for frame in framer.feed(piece, 0.0):
            with contextlib.suppress(ProtocolError):
                decoded.append("^".join(asena.decode(frame.payload)))
    # A garbage '!' just before a frame is harmless; garbage ending in '!' + text cannot hide a frame.
    assert decoded == bodies


@settings(deadline=None)  # timing of a loaded CI machine is not what is tested
@given(
    lines=st.lists(st.integers(0, 99_999), min_size=1, max_size=8),
    garbage=st.lists(
        st.binary(max_size=12).map(lambda b: bytes(GARBAGE_ALPHABET[x % 128] for x in b)), min_size=8, max_size=8
    ),
)
def test_diamentor_line_noise_never_decodes(lines: list[int], garbage: list[bytes]) -> None:
    """Line noise glued to a reply makes it undecodable; clean replies still decode."""
    replies = [ptw.format_measurement(n / 100, 1.0, n % 3600) for n in lines]
    stream = b"".join(g + r.encode() + b"\r\n" for g, r in zip(garbage, replies, strict=False))
    framer = LineFramer(b"\r\n")
    got = []
    for frame in framer.feed(stream, 0.0):
        with contextlib.suppress(ProtocolError):
            got.append(ptw.parse_measurement(ptw.text(frame.payload)))
    expected = [ptw.parse_measurement(r) for g, r in zip(garbage, replies, strict=False) if not g]
    assert got == expected


@settings(deadline=None)  # timing of a loaded CI machine is not what is tested
@given(
    statuses=st.lists(st.sampled_from(sorted(newera.STATES)), min_size=1, max_size=8),
    cuts=st.lists(st.integers(0, 10_000), max_size=20),
    garbage=st.lists(st.binary(max_size=10).map(lambda b: b.replace(b"\x02", b"")), min_size=8, max_size=8),
)
def test_newera_frames_survive_splits_and_noise(statuses: list[str], cuts: list[int], garbage: list[bytes]) -> None:
    replies = [newera.format_reply(0, s, "I1.234W0.000ML") for s in statuses]
    stream = b"".join(g + r for g, r in zip(garbage, replies, strict=False))
    framer = DelimitedFramer(newera.STX, newera.ETX, max_len=64)
    frames = [newera.parse_reply(f.payload).status for p in split(stream, cuts) for f in framer.feed(p, 0.0)]
    assert frames == statuses
    assert framer.garbage == sum(len(g) for g in garbage[: len(statuses)])


def test_frame_time_is_the_first_byte_time() -> None:
    framer = LineFramer(b"\r\n")
    assert framer.feed(b"M1.0", 10.0) == []
    (frame,) = framer.feed(b",2\r\n", 11.0)
    assert frame.time == 10.0 and frame.raw == b"M1.0,2\r\n"


def test_overlong_frames_are_dropped_and_the_framer_resyncs() -> None:
    line = LineFramer(b"\r\n", max_len=16)
    frames = line.feed(b"x" * 100 + b"\r\nOK\r\n", 0.0)
    assert [f.payload for f in frames] == [b"OK"]
    assert line.overlong == 1 and line.garbage == 102
    delimited = DelimitedFramer(0x02, 0x03, max_len=16)
    frames = delimited.feed(b"\x02" + b"y" * 40 + b"\x03\x02ok\x03", 0.0)
    assert [f.payload for f in frames] == [b"ok"]
    assert delimited.overlong == 1


def test_asena_bad_checksum_is_a_checksum_error() -> None:
    good = asena.encode("INF_VI^1.000^ML")
    bad = good[:-2] + (b"0" if good[-2:-1] != b"0" else b"1") + b"\r"
    try:
        asena.decode(bad[1:-1])
    except ChecksumError:
        pass
    else:
        raise AssertionError("a bad CRC decoded")


def test_codecs_reject_malformed_replies() -> None:
    for line in ["M1.0,2.0,3", "M-1.0,0,0,0", "Mabc,0,0,0", "M1.0,0,0,75", "Mnan,0,0,0", "X1,2,3,4"]:
        try:
            ptw.parse_measurement(line)
        except ProtocolError:
            continue
        raise AssertionError(f"{line!r} decoded")
    for payload in [b"00", b"xxI", b"00Z", b"00A?Q", b"00I\x01"]:
        try:
            newera.parse_reply(payload)
        except ProtocolError:
            continue
        raise AssertionError(f"{payload!r} decoded")
    assert newera.parse_dispensed("I1.5W0.25ML") == (1.5, 0.25)
    assert newera.parse_dispensed("I500W0UL") == (0.5, 0.0)
    assert abs(newera.parse_rate("120.0MH") - 120 / 3600) < 1e-12
