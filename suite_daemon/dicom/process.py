"""The DICOM receiver in a process of its own (`dicom.own_process`, the default).

The receiver's threads spend most of their time in Python between socket reads and syncs; in the daemon's
process they would take turns on one interpreter lock with the event pipeline (correlator, outbox, journal,
MQTT), and each would slow the other. In a child process each has a core.

The child (`python -m suite_daemon.dicom.process FD`) runs the same `DicomReceiver` on a `DaemonContext`
whose doors lead back here over a private socket pair: inputs (`submit`, `submit_durable`, acknowledged once
the pipeline has made them durable) and `daemon.jsonl` records. Messages are length-prefixed pickles; both
ends are this program. If the child dies, `run` raises and the supervisor restarts it (with the usual alert);
on stop it gets SIGTERM, finishes its associations, and everything it still sends is taken in.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import os
import pickle
import signal
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

import structlog

from suite_daemon.config import SuiteConfig
from suite_daemon.daemon.context import DaemonContext

log = structlog.get_logger()

_LENGTH = struct.Struct(">I")
STOP_GRACE_S = 20.0
"""The child's own shutdown waits up to 10 s for associations; then it is killed."""


async def _read(reader: asyncio.StreamReader) -> Any:
    """The next message, or None at end of stream."""
    try:
        head = await reader.readexactly(_LENGTH.size)
        body = await reader.readexactly(_LENGTH.unpack(head)[0])
    except asyncio.IncompleteReadError:
        return None
    return pickle.loads(body)


def _frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


class DicomReceiverProcess:
    name = "dicom"
    critical = True

    def __init__(self, config: SuiteConfig) -> None:
        self.config = config

    async def run(self, ctx: DaemonContext, started: Callable[[], None]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "suite_daemon.dicom.process",
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        writer.write(_frame(self.config))
        acks: set[asyncio.Task[None]] = set()
        try:
            while (message := await _read(reader)) is not None:
                self._handle(message, ctx, started, writer, acks)
            rc = await proc.wait()
            raise RuntimeError(f"the DICOM receiver process exited with status {rc}")
        finally:
            await asyncio.shield(self._stop(proc, reader, writer, ctx, started, acks))

    def _handle(
        self,
        message: tuple[Any, ...],
        ctx: DaemonContext,
        started: Callable[[], None],
        writer: asyncio.StreamWriter,
        acks: set[asyncio.Task[None]],
    ) -> None:
        kind = message[0]
        if kind == "submit":
            for item in message[1]:
                ctx.submit(item)
        elif kind == "durable":
            ids, items = message[1], message[2]
            futures = ctx.submit_durable_many(items)
            task = asyncio.ensure_future(_acknowledge(ids, futures, writer))
            acks.add(task)
            task.add_done_callback(acks.discard)
        elif kind == "audit":
            ctx.audit_daemon(message[1], **message[2])
        elif kind == "started":
            started()

    async def _stop(
        self,
        proc: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ctx: DaemonContext,
        started: Callable[[], None],
        acks: set[asyncio.Task[None]],
    ) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_GRACE_S):
                    # What the child still hands over while it stops is taken in (it is durable there).
                    while (message := await _read(reader)) is not None:
                        self._handle(message, ctx, started, writer, acks)
                    await proc.wait()
            except TimeoutError:
                log.error("dicom_process_killed", reason="did not stop in time")
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for task in list(acks):
            task.cancel()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _acknowledge(
    ids: list[int], futures: list[concurrent.futures.Future[None]], writer: asyncio.StreamWriter
) -> None:
    results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures), return_exceptions=True)
    if writer.is_closing():
        return
    writer.write(_frame(("ack", ids, [not isinstance(r, BaseException) for r in results])))


# -- the child ---------------------------------------------------------------------------------------


class _Link:
    """The child's end: forwards the context's inputs and audit records, resolves acknowledgements."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.waiting: dict[int, concurrent.futures.Future[None]] = {}
        self._next_id = 0

    async def forward(self, inputs: asyncio.Queue[Any]) -> None:
        while True:
            batch = [await inputs.get()]
            while not inputs.empty():
                batch.append(inputs.get_nowait())
            self.send_batch(batch)

    def send_batch(self, batch: list[Any]) -> None:
        """One message per run of plain or durable inputs, in the order they were submitted (a duplicate's
        event follows its original's)."""
        for durable, run in itertools.groupby(batch, key=lambda submission: submission[1] is not None):
            items = list(run)
            if not durable:
                self.writer.write(_frame(("submit", [item for item, _ in items])))
                continue
            ids = []
            for _, done in items:
                self._next_id += 1
                self.waiting[self._next_id] = done
                ids.append(self._next_id)
            self.writer.write(_frame(("durable", ids, [item for item, _ in items])))

    async def receive(self, reader: asyncio.StreamReader) -> None:
        while (message := await _read(reader)) is not None:
            if message[0] == "ack":
                for ident, ok in zip(message[1], message[2], strict=True):
                    done = self.waiting.pop(ident, None)
                    if done is not None and not done.done():
                        if ok:
                            done.set_result(None)
                        else:
                            done.set_exception(RuntimeError("the pipeline did not commit it"))


async def _serve(sock: socket.socket, config: SuiteConfig) -> None:
    from suite_daemon.dicom.receiver import DicomReceiver

    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    link = _Link(writer)
    inputs: asyncio.Queue[Any] = asyncio.Queue()

    def audit(event: str, **fields: Any) -> None:  # called from pynetdicom's threads
        loop.call_soon_threadsafe(writer.write, _frame(("audit", event, fields)))

    ctx = DaemonContext(config=config, loop=loop, inputs=inputs, audit_daemon=audit)
    receiver = asyncio.create_task(DicomReceiver(config).run(ctx, lambda: writer.write(_frame(("started",)))))
    forwarder = asyncio.create_task(link.forward(inputs))
    acks = asyncio.create_task(link.receive(reader))
    loop.add_signal_handler(signal.SIGTERM, receiver.cancel)
    acks.add_done_callback(lambda _: receiver.cancel())  # the daemon is gone: stop
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await receiver
    finally:
        forwarder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await forwarder
        pending: list[Any] = []
        while not inputs.empty():
            pending.append(inputs.get_nowait())
        if pending and not writer.is_closing():
            link.send_batch(pending)
        acks.cancel()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def _read_config(sock: socket.socket) -> SuiteConfig:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise SystemExit("suite-daemon dicom process: the daemon closed the connection")
            data += chunk
        return data

    config = pickle.loads(exactly(_LENGTH.unpack(exactly(_LENGTH.size))[0]))
    if not isinstance(config, SuiteConfig):
        raise SystemExit("suite-daemon dicom process: no configuration received")
    return config


def main() -> None:
    from suite_daemon.log_setup import configure_logging

    sock = socket.socket(fileno=int(sys.argv[1]))
    config = _read_config(sock)
    configure_logging(config.suite.log_level, config.suite.log_format)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches the daemon, which stops us
    asyncio.run(_serve(sock, config))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # pynetdicom's leftover daemon threads must not delay the exit


if __name__ == "__main__":
    main()
