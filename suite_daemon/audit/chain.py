"""The hash chain of the audit journal: canonical serialisation and record hashes (contract: Audit log).

A record's `hash` is the hex SHA-256 of the record without `hash`, serialised as JSON with sorted keys,
separators `(",", ":")`, non-ASCII characters kept as they are (`ensure_ascii=False`) and encoded as UTF-8.
The first record's `prev` is 64 zeros; every other record's `prev` is the previous record's `hash`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

GENESIS = "0" * 64
CHAIN_KEYS = ("seq", "time", "event", "prev", "hash")
"""Keys every record has; an event's own fields may not use them."""


def canonical_json(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def record_hash(record: Mapping[str, Any]) -> str:
    """The hash a record must carry: computed over every key except `hash` itself."""
    return hashlib.sha256(canonical_json({k: v for k, v in record.items() if k != "hash"})).hexdigest()
