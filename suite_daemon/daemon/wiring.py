"""Which components and which correlator a daemon runs, read in one place."""

from __future__ import annotations

from drivers.runner import components as device_components
from suite_daemon.config import SuiteConfig
from suite_daemon.correlator import ProcedureCorrelator
from suite_daemon.correlator.index_store import ProcedureIndex
from suite_daemon.daemon.component import Component
from suite_daemon.daemon.context import DaemonContext
from suite_daemon.dicom.process import DicomReceiverProcess
from suite_daemon.dicom.receiver import DicomReceiver
from suite_daemon.pipeline.correlation import Correlator


def build_components(config: SuiteConfig) -> list[Component]:
    components: list[Component] = []
    if config.dicom.enabled:
        components.append(DicomReceiverProcess(config) if config.dicom.own_process else DicomReceiver(config))
    components.extend(device_components(config))
    return components


def build_correlator(config: SuiteConfig, ctx: DaemonContext) -> Correlator:
    return ProcedureCorrelator(config, ProcedureIndex(ctx.index_path))
