"""Fixtures: a state dir with an index and journals written by the real journal writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite_daemon.config import SuiteConfig
from tests.audit.audit_fixtures import State, write_ct_procedure, write_fluoro_procedure


@pytest.fixture
def state(tmp_path: Path) -> State:
    root = tmp_path / "state"
    root.mkdir()
    config_file = tmp_path / "suite.toml"
    config_file.write_text(f'[suite]\nid = "ir-1"\nstate_dir = "{root}"\n', encoding="utf-8")
    return State(root, SuiteConfig.model_validate({"suite": {"id": "ir-1", "state_dir": root}}), config_file)


@pytest.fixture
def populated(state: State) -> State:
    write_fluoro_procedure(state.root)
    write_ct_procedure(state.root)
    return state
