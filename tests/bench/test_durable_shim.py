"""The bench's durable storescp references really sync every object (`bench/durable_shim.c`)."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.skipif(
    shutil.which("storescp") is None or (shutil.which("cc") or shutil.which("gcc")) is None,
    reason="DCMTK and a C compiler are needed",
)


def test_each_object_is_copied_into_the_synced_log(store_bench: ModuleType, tmp_path: Path) -> None:
    files = store_bench.make_corpus(tmp_path / "corpus", 0, 0, 3)["small"]
    shim = store_bench.build_shim(tmp_path)
    receiver = store_bench.DurableStoreScp(tmp_path / "log", shim, "log", log_bytes=1024 * 1024)
    scenario = store_bench.Scenario("small", "small", len(files), 1, True)

    store_bench.run_once(receiver, scenario, files)  # raises unless all 3 were synced

    stored = sorted((tmp_path / "trash").glob("*/*"))
    assert len(stored) == 3
    log = receiver.log.read_bytes()
    for path in stored:  # storescp's own files, as they were when it closed them
        assert path.read_bytes() in log


def test_each_object_file_is_synced(store_bench: ModuleType, tmp_path: Path) -> None:
    files = store_bench.make_corpus(tmp_path / "corpus", 0, 0, 3)["small"]
    shim = store_bench.build_shim(tmp_path)
    receiver = store_bench.DurableStoreScp(tmp_path / "file", shim, "file")
    scenario = store_bench.Scenario("small", "small", len(files), 1, True)

    store_bench.run_once(receiver, scenario, files)

    assert receiver.counter.read_bytes()[:8] == (3).to_bytes(8, "little")


def test_a_run_with_objects_left_unsynced_is_refused(store_bench: ModuleType, tmp_path: Path) -> None:
    receiver = store_bench.DurableStoreScp(tmp_path, tmp_path / "shim.so", "file")
    receiver.counter.write_bytes((2).to_bytes(8, "little"))

    with pytest.raises(RuntimeError, match="2 of 3 objects were synced"):
        receiver.check(3)
