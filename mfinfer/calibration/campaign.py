"""Running a campaign: train the models once, observations as dask tasks, then the report.

:func:`calibrate` trains the campaign's models with the pipeline's content-keyed ``train``
stage (in ``<output_dir>/<name>/seed_<seed>/models/``; a current model is never retrained), then
submits one task per observation that lacks a current record to a dask cluster: a
``LocalCluster`` of ``workers`` processes (one thread each), or the running scheduler at
``scheduler``. Each task writes its records itself, atomically, so a crash or a killed worker loses
only the tasks in flight (dask reruns them on another worker, and retries a task that failed
``mfinfer.parallel.TASK_RETRIES`` times; a task run twice writes the same bytes) and running the
campaign again computes only what is missing.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch

from mfinfer.caching import json_key
from mfinfer.calibration.config import TRUTH, Campaign
from mfinfer.calibration.observation import ObservationTask, Source, run_observation
from mfinfer.calibration.report import COVERAGE_FILE, SUMMARY_FILE, level_name, write_report
from mfinfer.errors import InputError, MfinferError
from mfinfer.files import clean_temp, sha256_file
from mfinfer.parallel import TASK_RETRIES, dask_client

__all__ = ["WorkerLostError", "calibrate", "format_result"]

class WorkerLostError(MfinferError, RuntimeError):
    """A task's workers died too often (killed, out of memory); finished records are kept."""


def _say(progress: bool, text: str) -> None:
    if progress:
        print(f"calibrate: {text}", file=sys.stderr, flush=True)


def sources(campaign: Campaign, progress: bool = True) -> list[Source]:
    """The posteriors of the campaign, in ``calibration.models`` order; trains (or reuses) the
    models with the pipeline's ``simulate`` and ``train`` stages of seed ``campaign.seed``."""
    trained: dict[str, Source] = {}
    if campaign.run is not None and campaign.trained:
        from mfinfer.pipeline import Run

        run = Run(campaign.run, campaign.seed, progress)
        torch.set_num_threads(campaign.threads)
        run.simulate()
        for model in campaign.trained:
            run.train(only=model.name)
            final = (run.model_dir(model) / "final").resolve()
            sha = json_key(final / "model.json", "sha256", "weights.pt") or sha256_file(final / "weights.pt")
            trained[model.name] = Source(model.name, str(final), sha, model.mode)
    return [trained.get(name, Source(TRUTH)) for name in campaign.calibration.models]


def _submit(task: ObservationTask, todo: dict[int, tuple[Source, ...]], workers: int,
            scheduler: str | None, progress: bool) -> int:
    """Run the tasks, reporting as they finish; returns the number of workers."""
    from dask.distributed import KilledWorker, as_completed

    from mfinfer.utils import progress_bar

    with dask_client(workers, scheduler, quiet=not progress) as client:
        n_workers = len(client.nthreads())
        where = f"scheduler {scheduler}" if scheduler else "a local cluster"
        _say(progress, f"{len(todo)} observation(s) to compute on {where} of {n_workers} worker(s)")
        futures = [client.submit(run_observation, task, j, todo[j], pure=False, retries=TASK_RETRIES)
                   for j in todo]
        # drawn only on a terminal (never into redirected output)
        with progress_bar(None, progress, total=len(futures), desc="calibrate", unit="obs") as bar:
            try:
                for future in as_completed(futures):
                    future.result()
                    bar.update()
            except KilledWorker as err:
                raise WorkerLostError(f"a calibration task lost its worker too often ({err}); the "
                                      "finished observations are kept: run the same command again "
                                      "to resume") from None
    return n_workers


def calibrate(campaign: Campaign, *, workers: int | None = None, scheduler: str | None = None,
              progress: bool = True, force: bool = False, plots: bool = True) -> dict[str, Any]:
    """Run a calibration campaign and write its report (see :mod:`mfinfer.calibration`).

    Arguments:
        campaign: the validated config (:func:`~mfinfer.calibration.load_campaign`).
        workers: size of the local cluster (default 1); not with ``scheduler``.
        scheduler: address of a running dask scheduler (``tcp://host:8786``), whose workers see
            the same file system and can import mfinfer and the simulator.
        progress: progress messages and bar on stderr.
        force: recompute every record, even current ones.
        plots: draw the plots.

    Returns:
        The content of ``summary.json``.

    Raises:
        InputError: both ``workers`` and ``scheduler``, or a scheduler that does not answer.
        WorkerLostError: a task's workers died repeatedly.
    """
    if workers is not None and scheduler:
        raise InputError("--workers: sizes the local cluster; with --scheduler the workers are those "
                         "that joined that scheduler; give one of the two")
    t0 = time.perf_counter()
    cal = campaign.calibration
    directory = campaign.directory.resolve()
    srcs = sources(campaign, progress)
    task = ObservationTask(campaign.simulator, campaign.seed, cal.n_events, cal.num_samples, cal.method,
                           dict(cal.sampler), str(directory / "records"))
    for source in srcs:  # temps of writers killed mid-write
        clean_temp(task.path(source.name, 0).parent)
    todo = {j: tuple(s for s in srcs if force or not task.is_current(s, j))
            for j in range(cal.n_observations)}
    todo = {j: missing for j, missing in todo.items() if missing}
    computed = sum(len(missing) for missing in todo.values())
    reused = cal.n_observations * len(srcs) - computed
    _say(progress, f"{reused} of {cal.n_observations * len(srcs)} records current in {directory}")
    n_workers = _submit(task, todo, workers or 1, scheduler, progress) if todo else 0
    for source in srcs:  # those of workers killed during this pass
        clean_temp(task.path(source.name, 0).parent)
    run = {"computed": computed, "reused": reused, "workers": n_workers, "scheduler": scheduler,
           "seconds": round(time.perf_counter() - t0, 3)}
    return write_report(campaign, task, srcs, run, plots=plots)


def format_result(summary: dict[str, Any], directory: Any = None) -> str:
    """The coverage table of a ``summary.json``: one row per level, one column per model, with
    the 95 % binomial band of a calibrated posterior."""
    models = list(summary["models"])
    run = summary["run"]
    head = (f"Calibration of {summary['name']!r} (seed {summary['seed']}): {summary['n_observations']} "
            f"observations of {summary['n_events']} events, {summary['num_samples']} posterior samples "
            f"each ({summary['method']}); {run['computed']} records computed, {run['reused']} reused, "
            f"{run['seconds']:.1f} s")
    rows = [f"{'level':>6}  {'95% band':>12}  " + "  ".join(f"{m:>10}" for m in models)]
    for level in summary["levels"]:
        key = level_name(level)
        low, high = summary["binomial_band_95"][key]
        cells = "  ".join(f"{summary['models'][m]['coverage'][key]:>10.3f}" for m in models)
        rows.append(f"{key:>6}  {f'[{low:.2f}, {high:.2f}]':>12}  {cells}")
    ks = "; ".join(f"{m}: " + ", ".join(f"{label} {p:.2f}" for label, p in
                                        summary["models"][m]["ks_pvalue"].items()) for m in models)
    out = [head, "Empirical coverage of the highest-posterior-density regions:", *rows,
           f"KS p-values of the ranks' uniformity: {ks}"]
    if directory is not None:
        out.append(f"\ncalibration directory: {directory}  ({COVERAGE_FILE}, {SUMMARY_FILE}, coverage.png, "
                   "ranks_<model>.png, tarp_<model>.png, records/<model>/obs_<j>.json)")
    return "\n".join(out)
