"""The bench's latency round: every store's round trip, read from storescu's own log."""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType

import pytest

LOG = """\
10:00:00.000.100 Requesting Association
10:00:00.001.000 Sending Store Request (MsgID 1, SC)
XMIT: .
10:00:00.001.250 Received Store Response (Success)
10:00:00.001.300 Sending file: /corpus/sc00001.dcm
10:00:00.001.400 Sending Store Request (MsgID 2, SC)
XMIT: .
10:00:00.002.900 Received Store Response (Success)
23:59:59.999.900 Sending Store Request (MsgID 3, SC)
00:00:00.000.300 Received Store Response (Success)
10:00:00.003.000 Releasing Association
"""


def test_each_request_is_paired_with_its_response_to_the_microsecond(store_bench: ModuleType) -> None:
    took = store_bench.store_latencies(LOG)

    assert [round(t * 1e6) for t in took] == [250, 1500, 400]  # the third across midnight


def test_percentiles_are_values_that_were_measured(store_bench: ModuleType) -> None:
    values = [float(v) for v in range(100, 0, -1)]

    assert [store_bench.percentile(values, q) for q in (0.5, 0.9, 0.99, 1.0)] == [50.0, 90.0, 99.0, 100.0]
    assert store_bench.percentile([7.0], 0.99) == 7.0


def test_the_latency_round_times_every_store_of_a_real_storescu(store_bench: ModuleType, tmp_path: Path) -> None:
    files = store_bench.make_corpus(tmp_path / "corpus", 0, 0, 12)["small"]
    receiver = store_bench.StoreScp(tmp_path / "storescp")
    scenario = store_bench.Scenario("small", "small", len(files), 2, True)

    (latency,) = store_bench.measure_latency([receiver], scenario, files, tmp_path / "latency")

    assert (latency.scenario, latency.receiver) == ("small", "dcmtk storescp")
    assert 0 < latency.p50_ms <= latency.p90_ms <= latency.p99_ms <= latency.max_ms
    logs = sorted((tmp_path / "latency").glob("*/storescu-*.log"))
    assert len(logs) == 2  # one per association
    assert sum(len(store_bench.store_latencies(log.read_text())) for log in logs) == 12


def test_a_log_without_one_latency_per_object_gives_no_figures(
    store_bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The latency round comes after the throughput rounds: a storescu whose log reads otherwise must not
    cost the bench its table, nor give figures for fewer stores than were sent."""
    files = store_bench.make_corpus(tmp_path / "corpus", 0, 0, 3)["small"]
    scenario = store_bench.Scenario("small", "small", len(files), 1, True)
    quiet = store_bench.STORESCU_LOG_CONFIG.replace("INFO", "ERROR")  # storescu then logs no store at all
    monkeypatch.setattr(store_bench, "STORESCU_LOG_CONFIG", quiet)

    receiver = store_bench.StoreScp(tmp_path / "storescp")
    (latency,) = store_bench.measure_latency([receiver], scenario, files, tmp_path / "latency")

    assert all(math.isnan(v) for v in (latency.p50_ms, latency.p90_ms, latency.p99_ms, latency.max_ms))
