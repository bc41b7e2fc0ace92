"""Device entries in the config: driver options checked by each driver's own model, every error named."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.ptw_diamentor.session import DiamentorOptions
from drivers.registry import DRIVERS
from drivers.runner import DeviceComponent, components, port_settings
from suite_daemon.config import ConfigError, load_config


def write(tmp_path: Path, devices: str) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(f'[suite]\nid = "t"\nstate_dir = "{tmp_path}"\n\n{devices}')
    return path


def test_every_driver_is_registered_with_strict_options() -> None:
    assert set(DRIVERS) == {"ptw-diamentor", "newera-pump", "alaris-asena", "recorder"}
    for name, spec in DRIVERS.items():
        assert spec.name == name
        assert spec.Options.model_config.get("extra") == "forbid"
        spec.Options.model_validate({})  # every option has a default


def test_valid_devices_load_and_become_components(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
[[devices]]
name = "dap1"
driver = "ptw-diamentor"
port = "/dev/ttyUSB0"
poll_interval_s = 0.25
terminator = "cr"

[[devices]]
name = "pump1"
driver = "alaris-asena"
port = "socket://127.0.0.1:7001"
baudrate = 19200

[[devices]]
name = "off"
driver = "recorder"
port = "/dev/ttyUSB9"
enabled = false
framing = "delimited"
start_byte = 2
end_byte = 3
""",
        )
    )
    made = components(config)
    assert [c.name for c in made] == ["device:dap1", "device:pump1"]
    assert all(c.critical is False for c in made)
    dap = made[0]
    assert isinstance(dap, DeviceComponent)
    assert isinstance(dap.options, DiamentorOptions)
    assert dap.options.poll_interval_s == 0.25
    assert port_settings(config.devices[0], DRIVERS["ptw-diamentor"]).baudrate == 9600
    assert port_settings(config.devices[1], DRIVERS["alaris-asena"]).baudrate == 19200


def test_bad_device_entries_are_all_reported_with_their_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[devices]]
name = "dap1"
driver = "ptw-diamentor"
port = "/dev/ttyUSB0"
poll_interval_s = -1
colour = "blue"

[[devices]]
name = "pump1"
driver = "no-such-driver"
port = "/dev/ttyUSB1"

[[devices]]
name = "pump2"
driver = "newera-pump"
port = "/dev/ttyUSB2"
address = 100

[[devices]]
name = "rec"
driver = "recorder"
port = "/dev/ttyUSB3"
framing = "delimited"
start_byte = 3
end_byte = 3
""",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    keys = [key for key, _ in info.value.problems]
    assert keys == [
        "devices[0].poll_interval_s",
        "devices[0].colour",
        "devices[1].driver",
        "devices[2].address",
        "devices[3]",
    ]
    reasons = dict(info.value.problems)
    assert reasons["devices[0].colour"] == "unknown key"
    assert "unknown driver 'no-such-driver'" in reasons["devices[1].driver"]
    assert "must differ" in reasons["devices[3]"]
