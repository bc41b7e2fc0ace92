"""The instance index's duplicate lookups on a real SQLite file: the Bloom filter in front of them may send a
new UID to the database needlessly, but never answers "new" for a stored one, across restarts and growth."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite_daemon.dicom import uid_filter
from suite_daemon.dicom.index import InstanceIndex
from suite_daemon.dicom.uid_filter import UidFilter


def _summary(uid: str) -> dict[str, object]:
    return {
        "sop_instance_uid": uid,
        "study_instance_uid": "1.2.3",
        "series_instance_uid": "1.2.3.4",
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.7",
        "bytes": 10,
    }


def test_the_filter_never_misses_a_uid_it_was_given_and_rarely_claims_a_new_one() -> None:
    given = [f"1.2.826.0.1.3680043.10.1234.{i}" for i in range(20_000)]
    known = UidFilter(len(given), given)
    assert all(known.might_contain(uid) for uid in given)
    strangers = sum(known.might_contain(f"1.2.826.0.1.3680043.10.9999.{i}") for i in range(20_000))
    assert strangers < 200  # about 0.3 % expected; 1 % would mean the filter is broken


def test_stored_instances_are_found_after_a_restart_and_after_the_filter_grew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(uid_filter, "MIN_CAPACITY", 8)  # so that a few hundred rows outgrow it several times
    path = tmp_path / "index.sqlite3"
    index = InstanceIndex(path)
    uids = [f"1.2.3.4.{i}" for i in range(300)]
    for start in range(0, len(uids), 7):
        batch = uids[start : start + 7]
        index.add_many([(_summary(uid), tmp_path / f"{uid}.dcm") for uid in batch])
    assert all(index.lookup(uid) is not None for uid in uids)
    assert index.lookup("1.2.3.4.999") is None
    index.close()

    again = InstanceIndex(path)  # the filter is rebuilt from the table
    try:
        found = again.lookup("1.2.3.4.150")
        assert found is not None and found.path == tmp_path / "1.2.3.4.150.dcm"
        assert all(again.lookup(uid) is not None for uid in uids)
        assert again.lookup("1.2.3.5.1") is None
    finally:
        again.close()
