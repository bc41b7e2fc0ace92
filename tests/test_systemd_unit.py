"""The systemd unit: the directives the deployment relies on, and `systemd-analyze verify`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "suite-daemon.service"


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_unit_has_what_the_deployment_relies_on() -> None:
    d = directives()
    assert d["Type"] == ["notify"]
    assert d["Restart"] == ["on-failure"]
    assert d["RestartPreventExitStatus"] == ["78"]
    assert "WatchdogSec" in d and "StateDirectory" in d and "ConfigurationDirectory" in d
    assert d["SupplementaryGroups"] == ["dialout"]
    for hardening in ("ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges", "RestrictAddressFamilies"):
        assert hardening in d, hardening
    assert "AF_INET" in d["RestrictAddressFamilies"][0] and "AF_UNIX" in d["RestrictAddressFamilies"][0]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    binary = Path(sys.executable).parent / "suite-daemon"
    assert binary.exists(), "the project is not installed in this environment"
    unit = tmp_path / "suite-daemon.service"
    unit.write_text(UNIT.read_text().replace("/opt/suite-daemon/.venv/bin/suite-daemon", str(binary)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if "suite-daemon.service" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr
