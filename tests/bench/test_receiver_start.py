"""A receiver under test runs the code its environment names, wherever the bench is started from."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]


def test_a_receiver_runs_the_tree_on_its_pythonpath_even_from_inside_a_checkout(
    store_bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Variants of the receiver are compared side by side by naming each one's tree in PYTHONPATH. Python puts
    the current directory ahead of PYTHONPATH: started inside this checkout, every variant ran its code."""
    tree = tmp_path / "variant"
    (tree / "suite_daemon").mkdir(parents=True)
    (tree / "suite_daemon" / "__init__.py").write_text("")
    marker = tmp_path / "imported-from"

    class Probe(store_bench.Receiver):  # type: ignore[name-defined,misc]
        name = "probe"

        def prepare_run(self) -> dict[str, str]:
            return {"PYTHONPATH": str(tree)}

        def command(self, out: Path) -> list[str]:
            script = (
                "import pathlib, socket, time, suite_daemon\n"
                f"pathlib.Path({str(marker)!r}).write_text(suite_daemon.__file__)\n"
                f"s = socket.create_server(('127.0.0.1', {self.port}))\n"
                "time.sleep(60)\n"
            )
            return [sys.executable, "-c", script]

    monkeypatch.chdir(CHECKOUT)
    probe = Probe(tmp_path / "work")
    probe.start()
    try:
        assert Path(marker.read_text()) == tree / "suite_daemon" / "__init__.py"
    finally:
        probe.stop()
