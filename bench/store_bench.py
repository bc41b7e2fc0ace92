"""C-STORE throughput: suite-daemon's receiver beside DCMTK `storescp`, in the same run, sent by DCMTK `storescu`.

    .venv/bin/python bench/store_bench.py            # the full table (a few minutes on 2 cores)
    .venv/bin/python bench/store_bench.py --quick    # smaller corpus, one repetition
    .venv/bin/python bench/store_bench.py --json out.json

Corpus (deterministic, made with numpy + pydicom, cached in a temp folder): a CT series of 512x512 16-bit
slices (about 0.5 MB each), XA multi-frame runs (30 frames of 512x512), and many small objects (64x64
secondary captures, about 9 KB). Each scenario runs every receiver fresh (empty output/state dir), in
alternating rounds, and reports medians: images/s, MB/s, the receiver's CPU (percent of one core) and its
peak RSS. Outputs are deleted only at the end (see `set_aside`).

suite-daemon runs with everything on: fsync of every object and its directory before 0x0000, the SQLite
index and the announcements. `storescp` runs with its defaults (no fsync, 16 KiB max PDU) and
TCP_NODELAY=1 in its environment (without it, it stalls on delayed ACKs whatever the sender does).
With `--durable-storescp`, storescp also runs made durable per object (`durable_shim.c`, compiled here and
loaded with LD_PRELOAD), once syncing each file and once syncing a log, to show what the fsync alone costs a
compiled receiver. With `--orthanc`, Orthanc as Debian ships it runs too (fsync on, its default): the
receiver behind the issue's "Orthanc's level" targets, measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

UID_ROOT = "1.2.826.0.1.3680043.10.1234.8"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- corpus ------------------------------------------------------------------------------------------


def _dataset(sop_class: str, kind: int, index: int, modality: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = f"{UID_ROOT}.{kind}.{index + 1}"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = f"{UID_ROOT}.1"
    ds.SeriesInstanceUID = f"{UID_ROOT}.2.{kind}"
    ds.Modality = modality
    ds.PatientName = "Bench^Patient"
    ds.PatientID = "BENCH"
    ds.AccessionNumber = "BENCH1"
    ds.StudyDate = ds.ContentDate = ds.AcquisitionDate = "20261122"
    ds.ContentTime = ds.AcquisitionTime = "101500"
    ds.InstanceNumber = index + 1
    return ds


def _pixels(ds: Dataset, rng: np.random.Generator, rows: int, cols: int, frames: int = 1) -> None:
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = rng.integers(0, 4096, size=rows * cols * frames, dtype=np.uint16).tobytes()


def make_corpus(root: Path, ct: int, xa: int, small: int) -> dict[str, list[Path]]:
    marker = root / f"corpus-{ct}-{xa}-{small}.done"
    folders = {name: root / name for name in ("ct", "xa", "small")}
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        rng = np.random.default_rng(20261122)
        for folder in folders.values():
            folder.mkdir(parents=True)
        for i in range(ct):
            ds = _dataset("1.2.840.10008.5.1.4.1.1.2", 1, i, "CT")
            _pixels(ds, rng, 512, 512)
            ds.save_as(folders["ct"] / f"ct{i:05d}.dcm", enforce_file_format=True)
        for i in range(xa):
            ds = _dataset("1.2.840.10008.5.1.4.1.1.12.1", 2, i, "XA")
            _pixels(ds, rng, 512, 512, frames=30)
            ds.save_as(folders["xa"] / f"xa{i:05d}.dcm", enforce_file_format=True)
        for i in range(small):
            ds = _dataset("1.2.840.10008.5.1.4.1.1.7", 3, i, "OT")
            _pixels(ds, rng, 64, 64)
            ds.save_as(folders["small"] / f"sc{i:05d}.dcm", enforce_file_format=True)
        marker.touch()
    return {name: sorted(folder.glob("*.dcm")) for name, folder in folders.items()}


# -- receivers ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"receiver exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("receiver did not listen")


class Receiver:
    name: str
    ingest_log: str | None = None
    """Where suite-daemon keeps its ingest log under the output folder. It is made once (256 MB of zeros)
    when a daemon first starts on a state dir and reused ever after: kept from run to run, and complete
    before the first measured run, as on an installed system."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir.resolve()
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self, out: Path) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        out = self.workdir / "out"
        set_aside(out)
        out.mkdir(parents=True)
        kept = self.workdir / "ingest-log"
        if self.ingest_log is not None and kept.exists():
            (out / self.ingest_log).parent.mkdir(parents=True, exist_ok=True)
            kept.rename(out / self.ingest_log)
        self.port = free_port()
        # DCMTK as shipped keeps Nagle on unless TCP_NODELAY=1: the receivers always get it (ours sets it itself).
        env = {**os.environ, "TCP_NODELAY": "1", **self.prepare_run()}
        # Started in its own directory: `python -m` puts the current directory first on sys.path, ahead of
        # PYTHONPATH, so a receiver started inside a checkout would run that checkout's code, not the tree
        # its environment names (how variants of the receiver are compared side by side).
        self.proc = subprocess.Popen(
            self.command(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=self.workdir
        )
        wait_listening(self.port, self.proc)
        if self.ingest_log is not None:
            wait_for_ingest_log(out / self.ingest_log)
        time.sleep(0.2)  # the probe connection above is gone before the measured run

    def prepare_run(self) -> dict[str, str]:
        """Get ready for a run; returns what the receiver's environment adds to the bench's."""
        return {}

    def check(self, objects: int) -> None:
        """Raise if the run just made did not go as the receiver's name says."""

    def pids(self) -> list[int]:
        """The receiver and its child processes (`suite-daemon run` receives DICOM in a child)."""
        assert self.proc is not None
        pids = [self.proc.pid]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                pids.append(int(stat.parent.name))
        return pids

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        return total

    def peak_rss_mb(self) -> float:
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) / 1024
        return total or float("nan")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.ingest_log is not None and (self.workdir / "out" / self.ingest_log).exists():
            (self.workdir / "out" / self.ingest_log).rename(self.workdir / "ingest-log")
        set_aside(self.workdir / "out")


# Deleting files slows down creating new ones: without a journal (as on this kind of VM's disk), ext4's inode
# allocator skips every inode deleted in the last 60 s, or 360 s while the inode table block that holds it is
# dirty (fs/ext4/ialloc.c, `recently_deleted`; new files keep those blocks dirty), checking each one. So after a
# run's thousands of files are deleted every new file costs 0.1-1.2 ms (measured with ftrace and perf, for
# storescp and suite-daemon alike) for up to six minutes, and runs made then measure that. So outputs are only
# set aside while the bench runs and deleted at the end; a bench started within six minutes of deleting many
# files waits that out first.
RECENTLY_DELETED_S = 370.0


def set_aside(out: Path) -> None:
    if out.exists():
        trash = out.parent.parent / "trash"
        trash.mkdir(exist_ok=True)
        out.rename(trash / f"{out.parent.name}-{time.monotonic_ns()}")


def empty_trash(workdir: Path, wait: bool) -> None:
    """Delete the outputs set aside; with `wait`, first let the last deletion (this bench's or an earlier
    one's) age past the file system's recently-deleted window."""
    trash = workdir / "trash"
    emptied = workdir / "trash-emptied"
    if trash.exists() and any(trash.iterdir()):
        shutil.rmtree(trash, ignore_errors=True)
        emptied.touch()
    if wait and emptied.exists():
        left = RECENTLY_DELETED_S - (time.time() - emptied.stat().st_mtime)
        if left > 0:
            print(f"waiting {left:.0f} s after deleting an earlier run's files ...", file=sys.stderr)
            time.sleep(left)


def wait_for_ingest_log(directory: Path, segments: int = 16, limit_s: float = 120.0) -> None:
    deadline = time.monotonic() + limit_s
    while len(list(directory.glob("seg-*.log"))) < segments:
        if time.monotonic() > deadline:
            raise TimeoutError("the ingest log was not made")
        time.sleep(0.1)
    os.sync()


class SuiteDaemon(Receiver):
    name = "suite-daemon"
    ingest_log = "spool/.ingest"

    def command(self, out: Path) -> list[str]:
        return [sys.executable, "-m", "suite_daemon.dicom.standalone", str(out), str(self.port)]


class WholeDaemon(Receiver):
    """`suite-daemon run` itself, with its event pipeline, correlator, outbox and MQTT publisher (and a
    private Mosquitto on a free loopback port, whose own CPU is not counted)."""

    name = "suite-daemon run (whole)"
    ingest_log = "state/spool/.ingest"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.broker: subprocess.Popen[bytes] | None = None

    def command(self, out: Path) -> list[str]:
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        broker_port = free_port()
        conf = out / "mosquitto.conf"
        conf.write_text(f"listener {broker_port} 127.0.0.1\nallow_anonymous true\nuser root\n")
        self.broker = subprocess.Popen(
            [mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        config = out / "suite.toml"
        config.write_text(
            f'[suite]\nid = "bench"\nstate_dir = "{out / "state"}"\nlog_level = "warning"\nlog_format = "json"\n\n'
            f'[dicom]\nae_title = "SUITE_SCP"\nbind = "127.0.0.1"\nport = {self.port}\nmin_free_mb = 0\n'
            f'max_associations = 16\nallowed_callers = [{{ae_title = "*", host = "*"}}]\n\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\n'
        )
        return [sys.executable, "-m", "suite_daemon", "run", "--config", str(config)]

    def stop(self) -> None:
        super().stop()
        if self.broker is not None:
            self.broker.kill()
            self.broker.wait()
            self.broker = None


class StoreScp(Receiver):
    name = "dcmtk storescp"

    def command(self, out: Path) -> list[str]:
        return ["storescp", "-aet", "SUITE_SCP", "-od", str(out), str(self.port)]


class DurableStoreScp(StoreScp):
    """storescp made durable per object by `durable_shim.c` (LD_PRELOAD): each object is synced before
    storescp closes its file, and so before its answer. What durability costs a compiled receiver:
    `file` syncs each new file and its directory (what a receiver with fsync on usually does), `log`
    copies the object into a pre-zeroed file and syncs that (suite-daemon's ingest log; the copy is read
    back from storescp's file first, which costs it a little more than suite-daemon pays)."""

    def __init__(self, workdir: Path, shim: Path, mode: str, log_bytes: int = 256 * 1024 * 1024) -> None:
        if mode not in ("file", "log"):
            raise ValueError(f"unknown durable storescp mode {mode!r}")
        super().__init__(workdir)
        self.log_bytes = log_bytes
        self.name = f"storescp, {'fsync per file' if mode == 'file' else 'synced log'}"
        self.shim = shim
        self.mode = mode
        self.counter = workdir / "synced"
        self.log = workdir / "sync-log"

    def prepare_run(self) -> dict[str, str]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.mode == "log" and not self.log.exists():  # made once, like suite-daemon's ingest log
            with self.log.open("wb") as f:
                for offset in range(0, self.log_bytes, 1 << 20):
                    f.write(bytes(min(1 << 20, self.log_bytes - offset)))
                os.fsync(f.fileno())
        self.counter.unlink(missing_ok=True)
        return {
            "LD_PRELOAD": str(self.shim),
            "SUITE_SHIM_MODE": self.mode,
            "SUITE_SHIM_LOG": str(self.log),
            "SUITE_SHIM_COUNT": str(self.counter),
        }

    def check(self, objects: int) -> None:
        raw = self.counter.read_bytes() if self.counter.exists() else b""
        synced = int.from_bytes(raw[:8], "little") if len(raw) >= 8 else 0
        if synced != objects:
            raise RuntimeError(f"{self.name}: {synced} of {objects} objects were synced")


def build_shim(workdir: Path) -> Path | None:
    """Compile `durable_shim.c` into `workdir`; None (with a message) without a C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        print("no C compiler: the durable storescp references are left out", file=sys.stderr)
        return None
    out = workdir / "durable_shim.so"
    workdir.mkdir(parents=True, exist_ok=True)
    source = Path(__file__).with_name("durable_shim.c")
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(out), str(source), "-ldl"], check=True)
    return out


class OrthancScp(Receiver):
    """Orthanc as Debian ships it (1.10 on Debian 12), the issue's "Orthanc with fsync": `SyncStorageArea`
    on (its default since 1.7.4: each file is fsynced before the answer), a fresh SQLite index per run,
    the HTTP server off. Run as a separate program, never linked or copied (it is GPL)."""

    name = "Orthanc, fsync on"

    def command(self, out: Path) -> list[str]:
        config = {
            "Name": "suite-store-bench",
            "StorageDirectory": str(out),
            "IndexDirectory": str(out),
            "SyncStorageArea": True,
            "HttpServerEnabled": False,
            "DicomAet": "SUITE_SCP",
            "DicomPort": self.port,
            "DicomCheckCalledAet": False,
            "Plugins": [],
            "SaveJobs": False,
        }
        path = self.workdir / "orthanc.json"
        path.write_text(json.dumps(config))
        return [orthanc_binary() or "Orthanc", str(path)]

    def check(self, objects: int) -> None:
        stored = sum(1 for f in (self.workdir / "out").glob("??/??/*") if f.is_file())
        if stored != objects:
            raise RuntimeError(f"{self.name}: {stored} of {objects} objects were stored")


def orthanc_binary() -> str | None:
    """Debian installs Orthanc in /usr/sbin, which is not on every user's PATH."""
    return shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin")


class PynetdicomStoreScp(Receiver):
    name = "pynetdicom storescp"

    def command(self, out: Path) -> list[str]:
        return [sys.executable, "-m", "pynetdicom", "storescp", "-aet", "SUITE_SCP", "-od", str(out), str(self.port)]


# -- scenarios ---------------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    corpus: str
    count: int
    associations: int
    nodelay: bool


@dataclass
class Result:
    scenario: str
    receiver: str
    images_per_s: float
    mb_per_s: float
    cpu_percent: float
    peak_rss_mb: float


LATENCY_QUANTILES = (0.5, 0.9, 0.99, 1.0)


@dataclass
class Latency:
    """Store latency as the sender sees it, from C-STORE-RQ sent to C-STORE-RSP received, in milliseconds."""

    scenario: str
    receiver: str
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def send(port: int, files: list[Path], associations: int, nodelay: bool, log_dir: Path | None = None) -> float:
    """Send `files` over `associations` concurrent associations; the elapsed seconds. With `log_dir`, each
    storescu logs every request and response there with microsecond time stamps (`storescu-<n>.log`)."""
    env = {k: v for k, v in os.environ.items() if k != "TCP_NODELAY"}
    if nodelay:
        env["TCP_NODELAY"] = "1"
    parts = [files[i::associations] for i in range(associations)]
    logging: list[str] = []
    logs: list[Path | None] = [None] * associations
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        config = log_dir / "storescu-logger.cfg"
        config.write_text(STORESCU_LOG_CONFIG)
        logging = ["-lc", str(config)]
        logs = [log_dir / f"storescu-{i}.log" for i in range(associations)]
    with contextlib.ExitStack() as stack:
        # A log goes to a file, not a pipe: a pipe left unread while the other senders run would stall its sender.
        outputs = [stack.enter_context(log.open("wb")) if log else subprocess.DEVNULL for log in logs]
        start = time.perf_counter()
        procs = [
            subprocess.Popen(
                ["storescu", "-R", *logging, "-aec", "SUITE_SCP", "127.0.0.1", str(port), *map(str, part)],
                env=env,
                stdout=output,
                stderr=subprocess.PIPE,
            )
            for part, output in zip(parts, outputs, strict=True)
        ]
        errors = [p.communicate()[1] for p in procs]
        elapsed = time.perf_counter() - start
    failures = [
        err or (log.read_bytes()[-500:] if log else b"")
        for p, err, log in zip(procs, errors, logs, strict=True)
        if p.returncode != 0
    ]
    if failures:
        raise RuntimeError(f"storescu failed: {failures[0].decode(errors='replace')[:500]}")
    return elapsed


STORESCU_LOG_CONFIG = """\
log4cplus.rootLogger = INFO, out
log4cplus.appender.out = log4cplus::ConsoleAppender
log4cplus.appender.out.logToStderr = false
log4cplus.appender.out.ImmediateFlush = false
log4cplus.appender.out.layout = log4cplus::PatternLayout
log4cplus.appender.out.layout.ConversionPattern = %D{%H:%M:%S.%Q} %m%n
"""
"""storescu's log with each line's time to the microsecond (%Q: milliseconds with three decimals)."""

_SENT = "Sending Store Request"
_ANSWERED = "Received Store Response"


def _seconds(stamp: str) -> float:
    """`HH:MM:SS.mmm.uuu` as seconds since midnight."""
    hms, millis, micros = stamp.split(".")
    hours, minutes, seconds = hms.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1e3 + int(micros) / 1e6


def store_latencies(log: str) -> list[float]:
    """Seconds from each C-STORE request sent to its response received, from one storescu's log (one
    association: each request waits for its response before the next is sent)."""
    latencies: list[float] = []
    sent: float | None = None
    for line in log.splitlines():
        stamp, _, message = line.partition(" ")
        if message.startswith(_SENT):
            sent = _seconds(stamp)
        elif message.startswith(_ANSWERED) and sent is not None:
            took = _seconds(stamp) - sent
            latencies.append(took + 86400 if took < 0 else took)  # past midnight
            sent = None
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (`fraction` of 1): a value that was measured, never interpolated."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))]


def run_once(
    receiver: Receiver, scenario: Scenario, files: list[Path], log_dir: Path | None = None
) -> tuple[float, float, float, float]:
    """One run: images/s, MB/s, CPU % and peak RSS MB."""
    nbytes = sum(f.stat().st_size for f in files)
    os.sync()  # the previous run's write-back must not slow this one down
    receiver.start()
    try:
        cpu0 = receiver.cpu_seconds()
        elapsed = send(receiver.port, files, scenario.associations, scenario.nodelay, log_dir)
        cpu = receiver.cpu_seconds() - cpu0
        receiver.check(len(files))
        return len(files) / elapsed, nbytes / elapsed / 1e6, 100 * cpu / elapsed, receiver.peak_rss_mb()
    finally:
        receiver.stop()


def measure(receivers: list[Receiver], scenario: Scenario, files: list[Path], repeat: int) -> list[Result]:
    """`repeat` rounds, each running every receiver once in turn (the machine's speed drifts: alternating
    keeps the receivers' runs under the same conditions); medians per receiver. Each round starts with the
    next receiver, so that none always runs first, or right after the same one: where a run falls in its
    round moved the results of side-by-side rounds by more than some changes measured."""
    runs: dict[str, list[tuple[float, float, float, float]]] = {r.name: [] for r in receivers}
    for round_number in range(repeat):
        shift = round_number % len(receivers)
        for receiver in receivers[shift:] + receivers[:shift]:
            print(f"  {scenario.name}: {receiver.name} ...", file=sys.stderr)
            runs[receiver.name].append(run_once(receiver, scenario, files))
    results = []
    for name, got in runs.items():
        med = [statistics.median(r[i] for r in got) for i in range(3)] + [max(r[3] for r in got)]
        results.append(Result(scenario.name, name, *med))
    return results


def measure_latency(receivers: list[Receiver], scenario: Scenario, files: list[Path], logs: Path) -> list[Latency]:
    """One more run per receiver, with storescu logging each request and response into `logs`: the latency of
    every store as the sender sees it. Apart from the throughput rounds: logging costs the sender about 10 us
    per object (5 % of plain storescp's small-object rate, measured), which would narrow every ratio. A log
    that does not hold one latency per object gives no figures (NaN) rather than wrong ones, and does not
    fail a bench whose throughput rounds are done."""
    latencies = []
    for receiver in receivers:
        print(f"  {scenario.name}: {receiver.name}, latency ...", file=sys.stderr)
        folder = logs / re.sub(r"[^a-z0-9]+", "-", f"{scenario.name} {receiver.name}".lower())
        shutil.rmtree(folder, ignore_errors=True)  # kept until the next bench, to look into
        run_once(receiver, scenario, files, folder)
        took = [t for log in sorted(folder.glob("storescu-*.log")) for t in store_latencies(log.read_text())]
        if len(took) == len(files):
            quantiles = [1e3 * percentile(took, q) for q in LATENCY_QUANTILES]
        else:
            print(f"  {receiver.name}: {len(took)} latencies in {folder} for {len(files)} objects", file=sys.stderr)
            quantiles = [math.nan] * len(LATENCY_QUANTILES)
        latencies.append(Latency(scenario.name, receiver.name, *quantiles))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small corpus, one repetition")
    parser.add_argument("--repeat", type=int, default=None, help="runs per receiver and scenario (median)")
    parser.add_argument("--ct", type=int, default=None, help="CT slices (default 400)")
    parser.add_argument("--xa", type=int, default=None, help="XA runs of 30 frames (default 12)")
    parser.add_argument("--small", type=int, default=None, help="small objects (default 1500)")
    parser.add_argument("--with-pynetdicom", action="store_true", help="also measure stock pynetdicom storescp")
    parser.add_argument(
        "--whole-daemon", action="store_true", help="also measure `suite-daemon run` (pipeline, outbox, MQTT)"
    )
    parser.add_argument(
        "--durable-storescp",
        action="store_true",
        help="also measure storescp made durable per object (fsync per file; a synced log), built with cc",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=None,
        help="a scenario's full name, or comma-separated corpus names (ct, xa, small); may be repeated",
    )
    parser.add_argument(
        "--orthanc", action="store_true", help="also measure Orthanc with fsync on (Debian package orthanc)"
    )
    parser.add_argument(
        "--no-latency", action="store_true", help="skip the round that measures each store's latency (storescu's log)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON too")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "suite-store-bench")
    args = parser.parse_args()
    if shutil.which("storescu") is None or shutil.which("storescp") is None:
        sys.exit("DCMTK storescu/storescp are needed (apt-get install dcmtk)")
    quick = args.quick
    ct = args.ct or (100 if quick else 400)
    xa = args.xa or (4 if quick else 12)
    small = args.small or (300 if quick else 1500)
    repeat = args.repeat or (1 if quick else 3)
    shipped = max(100, small // 5)  # a Nagle-stalled sender is slow for some receivers: fewer objects
    scenarios = [
        Scenario("CT 512x512, 1 assoc", "ct", ct, 1, True),
        Scenario("XA 30-frame runs, 1 assoc", "xa", xa, 1, True),
        Scenario("small objects, 1 assoc", "small", small, 1, True),
        Scenario("small, storescu as shipped (Nagle on)", "small", shipped, 1, False),
        Scenario("CT 512x512, 4 assocs", "ct", ct, 4, True),
        Scenario("small objects, 4 assocs", "small", small, 4, True),
    ]
    if args.only:
        names = {s.name for s in scenarios}
        wanted = {part.strip() for value in args.only for part in ([value] if value in names else value.split(","))}
        unknown = wanted - names - {s.corpus for s in scenarios}
        if unknown:
            sys.exit(f"--only: no scenario or corpus named {', '.join(sorted(unknown))}")
        scenarios = [s for s in scenarios if s.name in wanted or s.corpus in wanted]
    print(f"making the corpus ({ct} CT, {xa} XA, {small} small) ...", file=sys.stderr)
    corpus = make_corpus(args.workdir / "corpus", ct, xa, small)
    receivers: list[Receiver] = [SuiteDaemon(args.workdir / "suite"), StoreScp(args.workdir / "storescp")]
    if args.with_pynetdicom:
        receivers.append(PynetdicomStoreScp(args.workdir / "pynetdicom"))
    if args.whole_daemon:
        receivers.insert(1, WholeDaemon(args.workdir / "daemon"))
    shim = build_shim(args.workdir) if args.durable_storescp else None
    if shim is not None:
        receivers.append(DurableStoreScp(args.workdir / "storescp-log", shim, "log"))
        receivers.append(DurableStoreScp(args.workdir / "storescp-file", shim, "file"))
    if args.orthanc:
        if orthanc_binary() is None:
            print("Orthanc is not installed (apt-get install orthanc): its reference is left out", file=sys.stderr)
        else:
            receivers.append(OrthancScp(args.workdir / "orthanc"))
    empty_trash(args.workdir, wait=True)
    results: list[Result] = []
    latencies: list[Latency] = []
    try:
        for scenario in scenarios:
            files = corpus[scenario.corpus][: scenario.count]
            results.extend(measure(receivers, scenario, files, repeat))
            if not args.no_latency:
                latencies.extend(measure_latency(receivers, scenario, files, args.workdir / "latency"))
    finally:
        empty_trash(args.workdir, wait=False)
    print_table(results, repeat)
    if latencies:
        print_latencies(latencies)
    if args.json:
        report = {"throughput": [r.__dict__ for r in results], "latency": [t.__dict__ for t in latencies]}
        args.json.write_text(json.dumps(report, indent=2))


def interpreter() -> str:
    """Which Python runs the receiver: how it was built moves its CPU per object by about a fifth (Debian's
    python3, linked statically with PGO and LTO, against a generic shared-library build such as pyenv's)."""
    maps = Path("/proc/self/maps").read_text() if Path("/proc/self/maps").exists() else ""
    libpython = "libpython shared" if "libpython" in maps else "libpython linked in"
    return f"Python {platform.python_version()} ({sys.executable}, {libpython})"


def print_table(results: list[Result], repeat: int) -> None:
    base = {r.scenario: r for r in results if r.receiver == "dcmtk storescp"}
    header = "| scenario | receiver | images/s | MB/s | CPU % | peak RSS MB | vs storescp |"
    print(f"\nDCMTK storescu sender, medians of {repeat} run(s), TCP_NODELAY=1 unless noted")
    print(f"suite-daemon on {interpreter()}\n")
    print(header)
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        ratio = r.images_per_s / base[r.scenario].images_per_s if r.scenario in base else float("nan")
        print(
            f"| {r.scenario} | {r.receiver} | {r.images_per_s:.0f} | {r.mb_per_s:.1f} | {r.cpu_percent:.0f} |"
            f" {r.peak_rss_mb:.0f} | {ratio:.2f}x |"
        )


def print_latencies(latencies: list[Latency]) -> None:
    print("\nStore latency as storescu sees it (C-STORE-RQ sent to C-STORE-RSP received), one run per receiver, ms")
    print("in a run apart from the throughput runs above: logging each store costs storescu about 10 us per object\n")
    print("| scenario | receiver | p50 | p90 | p99 | max |")
    print("|---|---|---:|---:|---:|---:|")
    for t in latencies:
        print(f"| {t.scenario} | {t.receiver} | {t.p50_ms:.2f} | {t.p90_ms:.2f} | {t.p99_ms:.2f} | {t.max_ms:.2f} |")


if __name__ == "__main__":
    main()
