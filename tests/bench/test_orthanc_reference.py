"""The bench's Orthanc reference stores every object, with fsync on (`OrthancScp` in bench/store_bench.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest


@pytest.mark.skipif(shutil.which("storescu") is None, reason="DCMTK is needed")
def test_orthanc_stores_each_object_with_fsync_on(store_bench: ModuleType, tmp_path: Path) -> None:
    if store_bench.orthanc_binary() is None:
        pytest.skip("Orthanc is not installed (Debian package orthanc)")
    files = store_bench.make_corpus(tmp_path / "corpus", 0, 0, 3)["small"]
    receiver = store_bench.OrthancScp(tmp_path / "orthanc")
    scenario = store_bench.Scenario("small", "small", len(files), 1, True)

    store_bench.run_once(receiver, scenario, files)  # raises unless Orthanc stored all 3

    config = json.loads((tmp_path / "orthanc" / "orthanc.json").read_text())
    assert config["SyncStorageArea"] is True


def test_a_run_orthanc_did_not_store_whole_is_refused(store_bench: ModuleType, tmp_path: Path) -> None:
    receiver = store_bench.OrthancScp(tmp_path)
    stored = tmp_path / "out" / "ab" / "cd"
    stored.mkdir(parents=True)
    (stored / "one").write_bytes(b"")
    (tmp_path / "out" / "index").write_bytes(b"")  # its SQLite index is not an object

    with pytest.raises(RuntimeError, match="1 of 2 objects were stored"):
        receiver.check(2)
