"""The correlator: turns the daemon's inputs into one record per procedure (docs/correlation.md).

`ProcedureCorrelator` is a pure state machine (clock injected, no I/O besides reading a received
dose/agent SR file) behind the pipeline's `Correlator` protocol.
"""

from suite_daemon.correlator.machine import ProcedureCorrelator

__all__ = ["ProcedureCorrelator"]
