"""Wall time of one calibration campaign on 1 and 2 dask workers (``mfinfer calibrate``), and their ratio.

Each worker count gets a fresh output directory (nothing reused) and a local cluster whose
workers have already imported mfinfer ("warm": the time is the campaign's, not the interpreter
start-up's), and the report is left out; ``--cold`` also times ``calibrate(workers=K)`` end to
end, cluster start and report included. The records of all runs must be identical (they are
seeded per observation).

    python benchmarks/bench_calibration.py                       # tests/configs/calibration_truth.yaml
    python benchmarks/bench_calibration.py --n-observations 200 --num-samples 1000 --cold
    python benchmarks/bench_calibration.py --config analyses/higgs4l/calibration.yaml --models truth \
        --n-observations 24
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import tempfile
import time
from pathlib import Path

from mfinfer.calibration import calibrate, load_campaign
from mfinfer.parallel import local_cluster

ROOT = Path(__file__).resolve().parents[1]


def records(directory: Path) -> dict[str, bytes]:
    root = directory / "records"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.json"))}


def _import() -> None:
    import mfinfer.calibration.observation  # noqa: F401 (a worker's first task pays for it)


def warm_run(campaign, workers: int) -> tuple[float, dict[str, bytes]]:
    """Seconds of the campaign's records (the report excluded) on a started local cluster of
    ``workers`` warm workers, and the records."""
    from dask.distributed import Client

    with local_cluster(workers, quiet=True) as cluster, \
            Client(cluster) as client:
        client.run(_import)
        summary = calibrate(campaign, scheduler=cluster.scheduler_address, progress=False, plots=False)
        seconds = summary["run"]["seconds"]  # up to the last record, before the report
        logging.getLogger("distributed.nanny").setLevel(logging.ERROR)
    return seconds, records(campaign.directory)


def main() -> None:
    import sbi.diagnostics  # noqa: F401 (imported by the first report: not in the timings)

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "tests" / "configs" / "calibration_truth.yaml"))
    parser.add_argument("--n-observations", type=int, help="override calibration.n_observations")
    parser.add_argument("--num-samples", type=int, help="override calibration.num_samples")
    parser.add_argument("--models", nargs="+", help="override calibration.models (e.g. truth)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cold", action="store_true", help="also time calibrate(workers=K) end to end")
    args = parser.parse_args()
    changes = {k: v for k, v in (("n_observations", args.n_observations),
                                 ("num_samples", args.num_samples),
                                 ("models", args.models)) if v is not None}
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.workers:
            campaign = load_campaign(args.config, {"output_dir": str(Path(tmp) / f"warm_{k}")})
            campaign = dataclasses.replace(
                campaign, calibration=dataclasses.replace(campaign.calibration, **changes))
            warm, recs = warm_run(campaign, k)
            reference = reference or recs
            if recs != reference:
                raise SystemExit(f"records with {k} workers differ from those with {args.workers[0]}")
            cold = None
            if args.cold:
                campaign = dataclasses.replace(campaign, output_dir=str(Path(tmp) / f"cold_{k}"))
                t0 = time.perf_counter()
                calibrate(campaign, workers=k, progress=False, plots=False)
                cold = time.perf_counter() - t0
            rows.append((k, warm, cold))
    cal = campaign.calibration
    print(f"campaign {campaign.name!r} ({campaign.simulator['name']}): {cal.n_observations} observations "
          f"x {cal.n_events} events, {cal.num_samples} samples ({cal.method}), models {cal.models}; "
          f"records identical across worker counts")
    print(f"{'workers':>7}  {'warm s':>8}  {'ratio':>6}  {'cold s':>8}  {'ratio':>6}")
    for k, warm, cold in rows:
        cold_text = f"{cold:8.2f}  {rows[0][2] / cold:6.2f}" if cold is not None and rows[0][2] else ""
        print(f"{k:>7}  {warm:8.2f}  {rows[0][1] / warm:6.2f}  {cold_text}")


if __name__ == "__main__":
    main()
