"""Time the README's first Python example, as written, statement by statement.

The first ```python block of README.md is parsed and each top-level statement run in turn, with its
wall time; the total and the share of the training statement are written to
``benchmarks/results/readme_example.json`` (issue 21's target: at most 45 s on a quiet 2-core
machine, training most of it). Torch keeps its default threads unless ``--threads`` is given.

    python benchmarks/bench_readme_example.py
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import re
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def first_example(readme: Path) -> str:
    """The first ```python block of ``readme``."""
    match = re.search(r"```python\n(.*?)```", readme.read_text(), re.S)
    if match is None:
        raise SystemExit(f"{readme}: no ```python block")
    return match.group(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/readme_example.json")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    code = first_example(ROOT / "README.md")
    namespace: dict = {}
    rows = []
    start = time.perf_counter()
    for node in ast.parse(code).body:
        source = ast.get_source_segment(code, node) or ""
        t0 = time.perf_counter()
        exec(compile(ast.Module([node], []), "<README>", "exec"), namespace)  # our own README's code
        seconds = round(time.perf_counter() - t0, 2)
        rows.append({"statement": source.splitlines()[0][:100], "seconds": seconds})
    total = time.perf_counter() - start
    train = sum(r["seconds"] for r in rows if ".train(" in r["statement"])
    result = {"total_s": round(total, 2), "training_statement_s": round(train, 2),
              "training_share": round(train / total, 3), "statements": rows,
              "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
              "load_average_before": os.getloadavg(), "machine": platform.machine()}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for r in rows:
        print(f"{r['seconds']:8.2f} s  {r['statement']}")
    print(f"total {total:.1f} s, training statement {train:.1f} s ({100 * train / total:.0f} %); "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
