"""The tamper-evident audit journal: hash-chained JSON lines per procedure, and their verification."""

from suite_daemon.audit.chain import GENESIS, canonical_json, record_hash
from suite_daemon.audit.journal import AuditJournal, AuditWriteError, JournalCorrupt
from suite_daemon.audit.journal_set import (
    DAEMON_JOURNAL,
    UNASSIGNED_JOURNAL,
    JournalSet,
    check_procedure_id,
    journal_path,
)
from suite_daemon.audit.verify import VerifyResult, verify_dir, verify_file

__all__ = [
    "DAEMON_JOURNAL",
    "GENESIS",
    "UNASSIGNED_JOURNAL",
    "AuditJournal",
    "AuditWriteError",
    "JournalCorrupt",
    "JournalSet",
    "VerifyResult",
    "canonical_json",
    "check_procedure_id",
    "journal_path",
    "record_hash",
    "verify_dir",
    "verify_file",
]
