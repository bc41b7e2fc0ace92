"""Load the TOML config, apply environment overrides, check secrets and device options.

Every problem is collected and reported at once as `config error: <dotted.key>: <reason>`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel, ValidationError

from suite_daemon.config.models import DeviceSection, SuiteConfig, TLSFiles
from suite_daemon.config.paths import relative_to

DEFAULT_CONFIG = Path("/etc/suite-daemon/suite.toml")
EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h; the unit sets RestartPreventExitStatus=78


class ConfigError(Exception):
    """One or more problems, each as (dotted key, reason)."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{key}: {reason}" for key, reason in self.problems))

    def lines(self) -> list[str]:
        return [f"config error: {key}: {reason}" for key, reason in self.problems]


def config_path(cli_value: str | None) -> Path:
    if cli_value:
        return Path(cli_value)
    return Path(os.environ.get("SUITE_DAEMON_CONFIG") or DEFAULT_CONFIG)


def dotted(loc: Iterable[str | int], prefix: str = "") -> str:
    key = prefix
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        else:
            key += f".{part}" if key else str(part)
    return key or "(top level)"


def _problems(error: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    problems = []
    for item in error.errors(include_url=False):
        loc = [p for p in item["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        problems.append((dotted(loc, prefix), message))
    return problems


def _check_readable(problems: list[tuple[str, str]], key: str, path: Path | None) -> None:
    if path is None:
        return
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        problems.append((key, f"cannot read {path}: {exc.strerror or exc}"))


def _check_files(config: SuiteConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    _check_readable(problems, "mqtt.password_file", config.mqtt.password_file)
    sections: list[tuple[str, TLSFiles | None]] = [("mqtt.tls", config.mqtt.tls), ("dicom.tls", config.dicom.tls)]
    for prefix, tls in sections:
        if tls is not None:
            for name in ("cert_file", "key_file", "ca_file"):
                _check_readable(problems, f"{prefix}.{name}", getattr(tls, name))
    return problems


def _check_devices(devices: object) -> list[tuple[str, str]]:
    """Each `[[devices]]` entry's driver and driver-specific keys (also when other keys are wrong)."""
    from drivers.registry import DRIVERS  # drivers import pyserial; keep config import light

    if not isinstance(devices, list):
        return []
    common = set(DeviceSection.model_fields)
    problems: list[tuple[str, str]] = []
    for index, device in enumerate(devices):
        if not isinstance(device, dict) or not isinstance(device.get("driver"), str):
            continue
        spec = DRIVERS.get(device["driver"])
        if spec is None:
            known = ", ".join(sorted(DRIVERS))
            problems.append((f"devices[{index}].driver", f"unknown driver {device['driver']!r} (known: {known})"))
            continue
        try:
            spec.Options.model_validate({k: v for k, v in device.items() if k not in common})
        except ValidationError as exc:
            problems.extend(_problems(exc, f"devices[{index}]"))
    return problems


ENV_PREFIX = "SUITE_DAEMON__"


def _check_environment() -> list[tuple[str, str]]:
    """Overrides for sections that do not exist would otherwise be ignored without a word."""
    sections = set(SuiteConfig.model_fields)
    problems = []
    for name in os.environ:
        if name.upper().startswith(ENV_PREFIX):
            section = name[len(ENV_PREFIX) :].split("__", 1)[0].lower()
            if section not in sections:
                problems.append((name, f"unknown section {section!r} (known: {', '.join(sorted(sections))})"))
    return problems


def load_config(path: Path) -> SuiteConfig:
    """Read and validate; raise ConfigError listing every problem."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([(str(path), f"cannot read config file: {exc.strerror or exc}")]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([(str(path), f"not valid TOML: {exc}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([(str(path), f"not UTF-8: {exc}")]) from exc
    device_problems = _check_devices(raw.get("devices")) + _check_environment()
    with relative_to(path.resolve().parent):
        try:
            config = SuiteConfig(**raw)
        except ValidationError as exc:
            raise ConfigError(_problems(exc) + device_problems) from exc
    problems = _check_files(config) + device_problems
    if problems:
        raise ConfigError(problems)
    return config


def driver_options(config: SuiteConfig, index: int) -> BaseModel:
    """The validated driver-specific options of `config.devices[index]`."""
    from drivers.registry import DRIVERS

    device = config.devices[index]
    return DRIVERS[device.driver].Options.model_validate(device.options)
