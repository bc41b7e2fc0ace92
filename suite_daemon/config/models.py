"""The configuration schema (see `config/suite.reference.toml` for every key, commented).

Every model forbids unknown keys. Relative paths are resolved against the config file's folder by
`loader.py`; secrets are only ever read from files named here, never written in the TOML.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from suite_daemon.config.paths import resolve_path

NAME_RE = re.compile(r"^[a-z0-9-]+$")
TOPIC_SEGMENT_RE = re.compile(r"^[^#+/\x00]+(/[^#+/\x00]+)*$")
DIRECT_FILING_SMALLEST_KB = 128
"""The least `dicom.direct_filing_min_kb` other than 0."""

ConfigPath = Annotated[Path, AfterValidator(resolve_path)]


def _name(value: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid name: use lowercase letters, digits and '-' ([a-z0-9-]+)")
    return value


def _ae_title(value: str) -> str:
    if not value.strip():
        raise ValueError("an AE title cannot be empty or all spaces")
    if len(value) > 16:
        raise ValueError(f"{value!r} is longer than 16 characters")
    if "\\" in value or any(ord(c) < 0x20 or ord(c) > 0x7E for c in value):
        raise ValueError(f"{value!r} may hold only printable ASCII without backslash")
    return value


def _stop_bits(value: float) -> float:
    if value not in (1, 1.5, 2):
        raise ValueError(f"{value!r} stop bits: use 1, 1.5 or 2")
    return value


Name = Annotated[str, AfterValidator(_name)]
AETitle = Annotated[str, AfterValidator(_ae_title)]
StopBits = Annotated[float, AfterValidator(_stop_bits)]
Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SuiteSection(Strict):
    id: Name
    site: str = ""
    state_dir: ConfigPath = Path("/var/lib/suite-daemon")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    """`auto`: JSON lines when stdout is not a terminal (journald), key=value on a terminal."""


class AllowedCaller(Strict):
    ae_title: AETitle
    host: str = "*"

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if value == "*":
            return value
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", value):
                raise ValueError(f"{value!r} is neither '*', an IP address nor a host name") from None
        return value


class TLSFiles(Strict):
    cert_file: ConfigPath | None = None
    key_file: ConfigPath | None = None
    ca_file: ConfigPath | None = None

    @model_validator(mode="after")
    def _pair(self) -> TLSFiles:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class DicomTLS(TLSFiles):
    require_client_cert: bool = True
    """With `ca_file`: callers must present a certificate signed by it."""

    @model_validator(mode="after")
    def _server_needs_cert(self) -> DicomTLS:
        if self.cert_file is None:
            raise ValueError("a TLS listener needs cert_file and key_file")
        return self


class DicomSection(Strict):
    enabled: bool = True
    ae_title: AETitle = "SUITE_SCP"
    bind: str = "0.0.0.0"
    port: Port = 11112
    max_associations: Annotated[int, Field(ge=1, le=256)] = 8
    allowed_callers: list[AllowedCaller] = Field(default_factory=list)
    """Empty: refuse every caller. `host = "*"`: the AE title from any host."""
    min_free_mb: Annotated[int, Field(ge=0)] = 1024
    """Below this much free space in state_dir, C-STORE answers 0xA700 (out of resources)."""
    own_process: bool = True
    """Run the receiver in a child process, so it does not share a core (and the GIL) with the event
    pipeline; false: inside the daemon's process."""
    ingest_log_mb: Annotated[int, Field(ge=0, le=65536)] = 256
    """Disk kept for the ingest log (16 MiB segments, made as needed): objects up to 4 MiB are made durable
    there with one cheap sync before 0x0000, then filed into the spool. 0: every object is written and synced
    in its spool file before the answer (slower)."""
    direct_filing_min_kb: Annotated[int, Field(ge=0)] = 0
    """Logged objects of this many KiB or more (0, or 128 at least) are filed into the spool around the page
    cache (O_DIRECT) during a burst, their copies written to the disk at once; 0: through the page cache,
    written out when the receiver is idle or the ingest log runs short (faster on a disk that the log's own
    syncs keep busy; docs/performance.md)."""
    acse_timeout_s: Seconds = 30.0
    dimse_timeout_s: Seconds = 60.0
    network_timeout_s: Seconds = 60.0
    max_pdu_size: Annotated[int, Field(ge=0)] = 0
    """Largest P-DATA PDU the receiver accepts; 0 means unlimited (fastest)."""
    mpps_commit_timeout_s: Seconds = 10.0
    """An MPPS N-CREATE/N-SET is answered only once the pipeline made it durable; past this, 0x0110."""
    tls: DicomTLS | None = None

    @field_validator("direct_filing_min_kb")
    @classmethod
    def _direct_filing_floor(cls, value: int) -> int:
        if 0 < value < DIRECT_FILING_SMALLEST_KB:  # why: `spool.DIRECT_FILING_SMALLEST`
            raise ValueError(f"0 (off) or at least {DIRECT_FILING_SMALLEST_KB}")
        return value


class MqttTLS(TLSFiles):
    pass


class MqttSection(Strict):
    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    port: Port = 1883
    topic_prefix: str = "suite"
    client_id: str | None = None
    """Default `suite-daemon-<suite.id>`: stable, so the broker resumes the session."""
    username: str | None = None
    password_file: ConfigPath | None = None
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    tls: MqttTLS | None = None
    include_phi: bool = False
    max_inflight: Annotated[int, Field(ge=1, le=1000)] = 64
    """QoS 1 publishes awaiting PUBACK at once."""
    outbox_max_events: Annotated[int, Field(ge=100)] = 1_000_000
    """Bound of the durable outbox. Past it, the oldest undelivered events are dropped (and alerted)."""
    outbox_warn_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.8
    reconnect_min_s: Seconds = 0.5
    reconnect_max_s: Seconds = 30.0

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not TOPIC_SEGMENT_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid topic prefix (no '#', '+', empty levels)")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> MqttSection:
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs username")
        return self


class ProcedureSection(Strict):
    idle_timeout_s: Seconds = 1800.0
    preroll_s: Annotated[float, Field(ge=0)] = 600.0
    summary_min_interval_s: Annotated[float, Field(ge=0)] = 0.25
    """Retained summaries are re-published on change at most this often (and once at close)."""


class DeviceSection(BaseModel):
    """Keys common to every device. Driver-specific keys are checked by the driver's own model."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: Name
    driver: str
    port: str
    enabled: bool = True
    baudrate: Annotated[int, Field(gt=0)] | None = None
    """None: the driver's default."""
    bytesize: Literal[5, 6, 7, 8] | None = None
    parity: Literal["N", "E", "O", "M", "S"] | None = None
    stopbits: StopBits | None = None
    rtscts: bool = False
    xonxoff: bool = False
    reconnect_min_s: Seconds = 0.5
    """First delay before reopening a port that failed or went away; doubles up to reconnect_max_s, with jitter."""
    reconnect_max_s: Seconds = 30.0

    @property
    def options(self) -> dict[str, Any]:
        """The driver-specific keys, as written."""
        return dict(self.model_extra or {})


Thresholds = list[Annotated[float, Field(gt=0)]]


class AlertsSection(Strict):
    air_kerma_mgy: Thresholds = Field(default_factory=lambda: [3000.0, 5000.0])
    dap_gycm2: Thresholds = Field(default_factory=list)
    ctdivol_mgy: Thresholds = Field(default_factory=list)
    dlp_mgycm: Thresholds = Field(default_factory=list)
    injection_pressure_kpa: Thresholds = Field(default_factory=list)
    injection_volume_ml: Thresholds = Field(default_factory=list)
    sar_wkg: Thresholds = Field(default_factory=list)
    fluoro_time_s: Thresholds = Field(default_factory=list)
    dose_source_tolerance_percent: Annotated[float, Field(gt=0)] = 20.0
    """An RDSR and a dose meter that disagree by more than this raise a warning."""

    @field_validator(
        "air_kerma_mgy",
        "dap_gycm2",
        "ctdivol_mgy",
        "dlp_mgycm",
        "injection_pressure_kpa",
        "injection_volume_ml",
        "sar_wkg",
        "fluoro_time_s",
    )
    @classmethod
    def _ascending(cls, value: list[float]) -> list[float]:
        if value != sorted(set(value)):
            raise ValueError("levels must be distinct and in ascending order")
        return value


class SuiteConfig(BaseSettings):
    """The whole configuration: TOML first, then `SUITE_DAEMON__SECTION__KEY` environment overrides."""

    model_config = SettingsConfigDict(
        env_prefix="SUITE_DAEMON__",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    suite: SuiteSection
    dicom: DicomSection = Field(default_factory=DicomSection)
    mqtt: MqttSection = Field(default_factory=MqttSection)
    procedure: ProcedureSection = Field(default_factory=ProcedureSection)
    devices: list[DeviceSection] = Field(default_factory=list)
    alerts: AlertsSection = Field(default_factory=AlertsSection)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML arrives as init kwargs; the environment overrides it.
        return (env_settings, init_settings)

    @field_validator("devices")
    @classmethod
    def _unique_devices(cls, value: list[DeviceSection]) -> list[DeviceSection]:
        seen: set[str] = set()
        for device in value:
            if device.name in seen:
                raise ValueError(f"device name {device.name!r} is used twice")
            seen.add(device.name)
        return value

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"suite-daemon-{self.suite.id}"

    @property
    def topic_root(self) -> str:
        return f"{self.mqtt.topic_prefix}/{self.suite.id}"
