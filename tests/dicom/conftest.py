"""Fixtures for the DICOM receiver tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.dicom.dicom_harness import Running, running_receiver


@pytest.fixture
async def scp(tmp_path: Path) -> AsyncIterator[Running]:
    async with running_receiver(tmp_path / "state") as running:
        yield running
