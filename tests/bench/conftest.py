"""The bench script loaded as a module, for the tests of its reference receivers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "store_bench.py"


@pytest.fixture(scope="module")
def store_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("store_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
