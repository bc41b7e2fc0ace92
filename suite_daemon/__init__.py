"""suite-daemon: the interventional radiology suite's DICOM, telemetry, MQTT and audit daemon."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("suite-daemon")
except PackageNotFoundError:  # running from a checkout without installing
    __version__ = "0.0.0+unknown"
