"""The analyses' notebooks run on a fresh clone (nbclient, in a temporary root that holds the
analyses and no runs/): with no full run they show the quick run and say so in their first output.

Default set: the power notebook's first cells (the choice of the run and its message) with a
finished quick run in place, and the Lorenz notebook end to end on its committed results. ``slow``:
power and H→4ℓ end to end on a tiny stand-in for their quick run (made here under the quick run's
name; ~1 min each on a loaded machine), and on a bare root, where the notebook makes the real quick
run itself (a few minutes each).
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = Path(__file__).parent / "configs"

nbclient = pytest.importorskip("nbclient")


@pytest.fixture
def fresh_root(tmp_path, monkeypatch):
    """A repository root like a fresh clone's: the analyses package, no runs/ (the notebooks
    import ``analyses`` from their working directory, mfinfer from the installed package)."""
    (tmp_path / "analyses").symlink_to(ROOT / "analyses")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _execute(name: str, root: Path, timeout: int = 600, cells: int | None = None
             ) -> nbformat.NotebookNode:
    """The notebook ``analyses/<name>`` executed in ``root`` (its first ``cells`` cells only)."""
    nb = nbformat.read(ROOT / "analyses" / name / "notebook.ipynb", as_version=4)
    nb.cells = nb.cells[:cells]
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits them
    try:
        nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(root)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def _first_output(nb: nbformat.NotebookNode) -> str:
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                return out["text"]
    raise AssertionError("the notebook printed nothing")


def _tiny_run(root: Path, tiny: str, name: str, points_of: str | None = None) -> None:
    """The tiny test config run under the quick run's name and directory (``root/runs/<name>``),
    with the true points of the config ``points_of`` (the notebook reads them from there)."""
    from mfinfer.cli import main

    cfg = yaml.safe_load((CONFIGS / tiny).read_text())
    cfg.update(name=name, output_dir=str(root / "runs"))
    if points_of:
        cfg["observed"]["theta"] = yaml.safe_load((ROOT / points_of).read_text())["observed"]["theta"]
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path), "--quiet"]) == 0


def test_power_notebook_first_cells_choose_the_quick_run(fresh_root):
    """No full run, a finished quick run: the first output says the quick run is shown."""
    seed = fresh_root / "runs" / "power-demo" / "seed_0"
    seed.mkdir(parents=True)
    (seed / "metrics.json").write_text("{}")
    (seed / "config.yaml").write_text((ROOT / "analyses" / "power" / "demo.yaml").read_text())
    nb = _execute("power", fresh_root, cells=3)
    first = _first_output(nb)
    assert first.startswith("No full run in runs/power ")
    assert "QUICK run" in first and "runs now" not in first
    assert "`python -m analyses.power.run --workers 2`" in first
    assert "run directory: runs/power-demo; seeds [0]" in nb.cells[2].outputs[-1]["text"]
    assert not (fresh_root / "runs" / "power").exists()


@pytest.mark.slow
def test_power_notebook_shows_the_quick_run(fresh_root):
    _tiny_run(fresh_root, "tiny.yaml", "power-demo")
    nb = _execute("power", fresh_root)
    first = _first_output(nb)
    assert "No full run in" in first and "QUICK run" in first and "runs now" not in first
    assert "python -m analyses.power.run --workers 2" in first
    assert not (fresh_root / "runs" / "power").exists()


@pytest.mark.slow
def test_higgs4l_notebook_shows_the_quick_run(fresh_root):
    _tiny_run(fresh_root, "higgs4l_tiny.yaml", "higgs4l-quick", "analyses/higgs4l/quick.yaml")
    nb = _execute("higgs4l", fresh_root)
    first = _first_output(nb)
    assert "QUICK run" in first and "python -m analyses.higgs4l.run" in first
    images = sum(out.get("output_type") == "display_data" and "image/png" in out.get("data", {})
                 for cell in nb.cells for out in cell.get("outputs", []))
    assert images >= 4  # kinematics, manifold distances, a corner plot, training curves


def test_lorenz_notebook_shows_the_committed_results(fresh_root):
    nb = _execute("lorenz", fresh_root)
    first = _first_output(nb)
    assert "committed results of the full run" in first and "none" in first


@pytest.mark.slow
@pytest.mark.parametrize("name", ["power", "higgs4l"])
def test_notebook_makes_the_quick_run_on_a_bare_clone(name, fresh_root):
    """What a newcomer gets: no runs at all, so the notebook makes the quick run (a few minutes)."""
    nb = _execute(name, fresh_root, timeout=1200)
    first = _first_output(nb)
    assert "QUICK run" in first and "runs now" in first
    quick = "power-demo" if name == "power" else "higgs4l-quick"
    assert (fresh_root / "runs" / quick / "seed_0" / "metrics.json").is_file()
    assert (fresh_root / "runs" / quick / "results.md").is_file()
