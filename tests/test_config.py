"""Config: every kind of bad config names its dotted key and exits 78; `run` refuses it too."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from drivers.registry import DRIVERS
from suite_daemon.config import ConfigError, SuiteConfig, load_config

REPO = Path(__file__).resolve().parent.parent

GOOD = """
[suite]
id = "ir-1"
state_dir = "state"

[dicom]
port = 11112
allowed_callers = [ { ae_title = "CT01", host = "10.0.0.5" } ]

[mqtt]
host = "127.0.0.1"

[[devices]]
name = "dap1"
driver = "ptw-diamentor"
port = "socket://127.0.0.1:17001"
"""


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "suite_daemon", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return path


def test_good_config_is_valid_and_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    config = load_config(path)
    assert config.suite.state_dir == tmp_path / "state"
    assert config.client_id == "suite-daemon-ir-1"
    assert cli("check-config", "--config", str(path)).returncode == 0


def test_shipped_configs_are_valid() -> None:
    for name in ("suite.example.toml", "suite.reference.toml"):
        result = cli("check-config", "--config", str(REPO / "config" / name))
        assert result.returncode == 0, result.stderr


def _keys(model: type[BaseModel]) -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(name)
        for arg in [field.annotation, *getattr(field.annotation, "__args__", ())]:
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                keys |= _keys(arg)
    return keys


def test_reference_config_names_every_key() -> None:
    text = (REPO / "config" / "suite.reference.toml").read_text()
    written = set(re.findall(r"^\s*#?\s*([a-z_0-9]+)\s*=", text, re.MULTILINE))
    expected = _keys(SuiteConfig) | {k for spec in DRIVERS.values() for k in spec.Options.model_fields}
    missing = expected - written - {"suite", "dicom", "mqtt", "procedure", "devices", "alerts", "tls"}
    assert not missing, f"config/suite.reference.toml lacks {sorted(missing)}"


BAD = {
    "unknown key": (GOOD.replace('host = "127.0.0.1"', 'host = "127.0.0.1"\nhots = "x"'), "mqtt.hots"),
    "wrong type": (GOOD.replace("port = 11112", 'port = "eleven"'), "dicom.port"),
    "bad name": (GOOD.replace('id = "ir-1"', 'id = "IR 1"'), "suite.id"),
    "impossible port": (GOOD.replace("port = 11112", "port = 70000"), "dicom.port"),
    "missing secret file": (
        GOOD.replace('host = "127.0.0.1"', 'host = "127.0.0.1"\nusername = "u"\npassword_file = "nope.pw"'),
        "mqtt.password_file",
    ),
    "bad device key": (GOOD + 'poll_interval_s = "fast"\n', "devices[0].poll_interval_s"),
    "impossible stop bits": (GOOD + "stopbits = 3\n", "devices[0].stopbits"),
    "unknown driver": (GOOD.replace('driver = "ptw-diamentor"', 'driver = "nope"'), "devices[0].driver"),
    "empty broker host": (GOOD.replace('host = "127.0.0.1"', 'host = ""'), "mqtt.host"),
    "bad caller host": (GOOD.replace('host = "10.0.0.5"', 'host = "a b"'), "dicom.allowed_callers[0].host"),
    "direct filing below its floor": (
        GOOD.replace("port = 11112", "port = 11112\ndirect_filing_min_kb = 64"),
        "dicom.direct_filing_min_kb",
    ),
    "not toml": ("[suite\nid=", "suite.toml"),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_config_names_the_key_and_exits_78(tmp_path: Path, kind: str) -> None:
    text, key = BAD[kind]
    path = write(tmp_path, text)
    result = cli("check-config", "--config", str(path))
    assert result.returncode == 78, result.stderr
    assert re.search(rf"^config error: [^\n]*{re.escape(key)}[^\n]*: ", result.stderr, re.MULTILINE), result.stderr
    assert result.stdout == ""


def test_run_refuses_a_bad_config_with_78(tmp_path: Path) -> None:
    path = write(tmp_path, BAD["impossible port"][0])
    result = cli("run", "--config", str(path))
    assert result.returncode == 78
    assert "config error: dicom.port:" in result.stderr


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace("port = 11112", "port = 0").replace('id = "ir-1"', 'id = "Bad!"') + "extra = 1\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    keys = {key for key, _ in caught.value.problems}
    assert {"dicom.port", "suite.id", "devices[0].extra"} <= keys


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    result = cli("check-config", "--config", str(path), env={"SUITE_DAEMON__MQTT__PORT": "99999"})
    assert result.returncode == 78
    assert "config error: mqtt.port:" in result.stderr
    os.environ["SUITE_DAEMON__MQTT__HOST"] = "broker.example"
    try:
        assert load_config(path).mqtt.host == "broker.example"
    finally:
        del os.environ["SUITE_DAEMON__MQTT__HOST"]


def test_unknown_environment_section_is_an_error(tmp_path: Path) -> None:
    result = cli("check-config", "--config", str(write(tmp_path, GOOD)), env={"SUITE_DAEMON__NOPE__X": "1"})
    assert result.returncode == 78
    assert "config error: SUITE_DAEMON__NOPE__X: unknown section 'nope'" in result.stderr


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assert cli("check-config", env={"SUITE_DAEMON_CONFIG": str(path)}).returncode == 0
    result = cli("check-config", env={"SUITE_DAEMON_CONFIG": str(tmp_path / "absent.toml")})
    assert result.returncode == 78
    assert "cannot read config file" in result.stderr


def test_usage_error_exits_64() -> None:
    assert cli("no-such-command").returncode == 64
