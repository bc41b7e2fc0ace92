"""Configuration: the schema (`models`) and how it is read (`loader`)."""

from suite_daemon.config.loader import EXIT_CONFIG, ConfigError, config_path, load_config
from suite_daemon.config.models import DeviceSection, SuiteConfig

__all__ = ["EXIT_CONFIG", "ConfigError", "DeviceSection", "SuiteConfig", "config_path", "load_config"]
