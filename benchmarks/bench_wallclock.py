"""Wall-clock times of the three test scenarios that used to assert a time budget.

The tests check what these runs produce; how long they take depends on the machine and its load,
so the timings live here instead and are printed next to the budgets the tests used to enforce:

- ``circle``: an M-flow learns the circle (tests/test_training.py::test_mflow_learns_the_circle),
  budget 60 s;
- ``tiny``: ``mfinfer run`` on tests/configs/tiny.yaml (tests/test_cli.py), budget 120 s;
- ``higgs4l``: ``mfinfer run`` on tests/configs/higgs4l_tiny.yaml
  (tests/test_higgs4l_pipeline.py), budget 60 s.

    python benchmarks/bench_wallclock.py [--only circle tiny higgs4l] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "tests" / "configs"
BUDGETS = {"circle": 60.0, "tiny": 120.0, "higgs4l": 60.0}


def circle() -> float:
    """Seconds to train the M-flow of test_mflow_learns_the_circle (30 epochs on 4000 events)."""
    from mfinfer import get_simulator
    from mfinfer.models import ManifoldFlow
    from mfinfer.training import TrainConfig, train

    start = time.perf_counter()
    _, x = get_simulator("circle").simulate(4000, rng=0)
    model = ManifoldFlow(2, 1, outer_layers=3, inner_layers=2, hidden_features=32)
    train(model, x, config=TrainConfig(epochs=30, lr=3e-3, progress=False))
    with torch.no_grad():
        model.project(torch.as_tensor(x, dtype=torch.float32))
        model.sample(2000)
    return time.perf_counter() - start


def _cli_run(config: Path) -> float:
    """Seconds for ``mfinfer run CONFIG --quiet`` with its output in a temporary directory."""
    from mfinfer.cli import main as cli_main

    with tempfile.TemporaryDirectory() as tmp:
        cfg = yaml.safe_load(config.read_text())
        cfg["output_dir"] = str(Path(tmp) / "runs")
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        start = time.perf_counter()
        if cli_main(["run", str(path), "--quiet"]) != 0:
            raise RuntimeError(f"mfinfer run {config.name} failed")
        return time.perf_counter() - start


def tiny() -> float:
    return _cli_run(CONFIGS / "tiny.yaml")


def higgs4l() -> float:
    return _cli_run(CONFIGS / "higgs4l_tiny.yaml")


CASES = {"circle": circle, "tiny": tiny, "higgs4l": higgs4l}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the tests use 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("| scenario | seconds | former test budget (s) |")
    for name in args.only:
        torch.manual_seed(0)
        seconds = CASES[name]()
        print(json.dumps({"scenario": name, "seconds": seconds, "budget_s": BUDGETS[name],
                          "threads": args.threads}))
        print(f"| {name} | {seconds:.1f} | {BUDGETS[name]:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
