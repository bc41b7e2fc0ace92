"""The daemon as a subprocess with a temp config and state dir, observed through its public surface.

Readiness is read from the systemd notify protocol: the harness binds the `NOTIFY_SOCKET`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Protocol

from tests.broker import Mosquitto, free_port

REPO = Path(__file__).resolve().parent.parent
ANY_CALLER = '[{ae_title = "*", host = "*"}]'


class DaemonProcess:
    def __init__(
        self,
        workdir: Path,
        broker: Mosquitto,
        suite_id: str,
        extra_toml: str = "",
        dicom_port: int | None = None,
        allowed_callers: str = ANY_CALLER,
        dicom_enabled: bool = True,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.broker = broker
        self.suite_id = suite_id
        self.state_dir = workdir / "state"
        self.dicom_port = dicom_port or free_port()
        self.config_path = workdir / "suite.toml"
        self.log_path = workdir / "daemon.log"
        self.root = f"suite/{suite_id}"
        self.config_path.write_text(
            f'[suite]\nid = "{suite_id}"\nstate_dir = "{self.state_dir}"\nlog_level = "debug"\nlog_format = "json"\n\n'
            f'[dicom]\nenabled = {"true" if dicom_enabled else "false"}\nae_title = "SUITE_SCP"\n'
            f'bind = "127.0.0.1"\nport = {self.dicom_port}\nmin_free_mb = 1\ningest_log_mb = 32\n'
            f"allowed_callers = {allowed_callers}\n\n"
            f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nreconnect_max_s = 1.0\n\n' + extra_toml
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.notify_path = workdir / "notify.sock"
        self._notify: socket.socket | None = None
        self.notifications: list[str] = []

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "suite_daemon", *args, "--config", str(self.config_path)]

    def start(self, env: dict[str, str] | None = None, wait_ready: bool = True) -> DaemonProcess:
        assert self.process is None or self.process.poll() is not None, "already running"
        if self._notify is None:
            self.notify_path.unlink(missing_ok=True)
            self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._notify.bind(str(self.notify_path))
        self.notifications.clear()
        full_env = {**os.environ, "NOTIFY_SOCKET": str(self.notify_path), **(env or {})}
        full_env.pop("WATCHDOG_USEC", None)
        full_env.update(env or {})
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command("run"), stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=REPO
        )
        log.close()
        if wait_ready:
            self.wait_notification("READY=1")
        return self

    def read_notifications(self, timeout: float) -> None:
        assert self._notify is not None
        self._notify.settimeout(timeout)
        try:
            data = self._notify.recv(4096)
        except TimeoutError:
            return
        self.notifications.append(data.decode())

    def wait_notification(self, needle: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for note in self.notifications[seen:]:
                if needle in note.split("\n"):
                    return note
            seen = len(self.notifications)
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.process.returncode}:\n{self.log_tail()}")
            self.read_notifications(0.2)
        raise TimeoutError(f"no {needle} from the daemon within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._notify is not None:
            self._notify.close()
            self._notify = None

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout, cwd=REPO)


class DaemonFactory(Protocol):
    """The `daemon_factory` fixture: a `DaemonProcess` in a fresh workdir of the test, stopped at its end."""

    def __call__(
        self,
        extra_toml: str = "",
        *,
        dicom_port: int | None = None,
        allowed_callers: str = ANY_CALLER,
        dicom_enabled: bool = True,
    ) -> DaemonProcess: ...
