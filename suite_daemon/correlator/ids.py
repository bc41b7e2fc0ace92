"""Readable, unique procedure ids: `<suite>-<UTC yyyymmddTHHMMSS>-<6 hex of the study uid>`."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Container
from datetime import UTC, datetime

PROCEDURE_ID_RE = re.compile(r"^[A-Za-z0-9._-]+$")


def new_procedure_id(suite_id: str, opened_at: datetime, key: str, taken: Container[str]) -> str:
    """`key` is the study uid (or, without one, anything that tells this opening apart)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:6]
    base = f"{suite_id}-{opened_at.astimezone(UTC):%Y%m%dT%H%M%S}-{digest}"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    assert PROCEDURE_ID_RE.fullmatch(candidate), candidate
    return candidate
