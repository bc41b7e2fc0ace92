"""The auditor's side: list and show procedures, verify the audit journals, write reports."""

from suite_daemon.inspect.commands import cmd_audit_verify, cmd_procedures, cmd_report, cmd_show
from suite_daemon.inspect.store import PROCEDURES_DDL, StateStore

__all__ = ["PROCEDURES_DDL", "StateStore", "cmd_audit_verify", "cmd_procedures", "cmd_report", "cmd_show"]
