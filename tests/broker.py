"""A private Mosquitto broker on a free loopback port, which tests can stop and restart."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port}")


MAX_INFLIGHT_MESSAGES = 100
"""QoS 1 messages the test broker has out to one client at a time (redelivered after it restarts)."""


class Mosquitto:
    """Sessions and queued messages of persistent subscribers are saved every second, so a
    subscriber with `clean_session=False` misses nothing across a broker restart."""

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = "", anonymous: bool = True) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.conf.write_text(
            f"listener {self.port} {self.host}\n"
            f"allow_anonymous {'true' if anonymous else 'false'}\n"
            # started as root, mosquitto would switch to its own user and could not write here
            "user root\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 1000000\n"
            f"max_inflight_messages {MAX_INFLIGHT_MESSAGES}\n"
            f"log_dest file {self.log}\n" + extra_conf
        )
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> str | None:
        return shutil.which("mosquitto") or next(
            (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
        )

    def start(self) -> None:
        binary = self.binary()
        assert binary, "mosquitto is not installed (make test installs it)"
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_port(self.host, self.port)

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Stop the broker (SIGKILL by default: an outage, not a polite shutdown)."""
        if self.process is not None:
            self.process.send_signal(sig)
            self.process.wait(10)
            self.process = None

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open but nothing is answered, as with a hung
        broker or a network that drops everything. Nothing it holds is lost."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None
