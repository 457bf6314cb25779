"""The notebooks run end to end against a freshly seeded database, every plot drawn; and they
are committed without outputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def seeded(database_url: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "seed_demo_data.py"), "--conversations", "6",
         "--crashes", "1", "--failures", "2", "--tokens", "12",
         "--comparisons", "6"],
        env={**os.environ, "DATABASE_URL": database_url}, cwd=ROOT, capture_output=True,
        text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Done:" in result.stdout
    return database_url


def test_the_notebooks_are_committed_without_outputs() -> None:
    assert {p.name for p in NOTEBOOKS} == {"conversation_analysis.ipynb",
                                          "model_comparison.ipynb",
                                          "workflow_forensics.ipynb"}
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name


@pytest.mark.slow  # seeds a database and runs each notebook in a kernel
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_draws_every_plot(seeded: str, path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", seeded)  # the kernel inherits it
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    plots = [c for c in nb.cells if c.cell_type == "code" and "plt.show()" in c.source]
    assert plots
    for cell in plots:
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert images, f"no plot drawn by:\n{cell.source[:200]}"
