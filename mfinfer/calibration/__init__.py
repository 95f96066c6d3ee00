"""Calibration campaigns (``mfinfer calibrate CONFIG``): are the posteriors' credible regions right?

For observations j = 0..n-1, θ_j is drawn from the prior and X_j (``n_events`` events) simulated
from it; every model's posterior p̂(θ|X_j) is sampled, and θ_j is ranked among the samples: per
parameter (SBC ranks) and by log posterior (the highest-posterior-density (HPD) region whose
credibility just holds θ_j). The empirical coverage at level c, the fraction of θ_j inside the
c-HPD region, is c for a calibrated posterior, up to binomial noise. ``truth`` (the simulator's
exact likelihood) is the control: its coverage must be nominal.

- :mod:`~mfinfer.calibration.config`: the ``calibration:`` section, :func:`load_campaign`;
- :mod:`~mfinfer.calibration.observation`: one observation as a dask task, its records;
- :mod:`~mfinfer.calibration.ranks`: ranks, coverage, binomial bands, sbi's ``check_sbc`` /
  ``check_tarp``;
- :mod:`~mfinfer.calibration.report`: ``coverage.json``, ``summary.json``;
  :mod:`~mfinfer.calibration.plots`: the plots;
- :mod:`~mfinfer.calibration.campaign`: :func:`calibrate`, training once and the dask run.

Config: a run config (``mfinfer.config.RunConfig``) plus::

    calibration:
      n_observations: 200          # required
      n_events: 20                 # events per observation
      num_samples: 1000            # posterior samples per observation and model
      levels: [0.05, 0.1, ..., 0.95]
      models: [truth, AF, M-flow]  # 'truth' and/or names of the config's models
      method: smc                  # any method of mfinfer.inference.sample_posterior
      sampler: {}                  # its other options, e.g. {num_particles: 2000}
      c2st: true                   # also sbi's classifier checks in summary.json

A ``truth``-only campaign needs no ``models``, ``n_train`` or ``observed``. The campaign's seed is
the first of ``seeds`` (``--seeds S`` picks another); trained models are those of
``<output_dir>/<name>/seed_<seed>``, trained there by the pipeline if they are not current.

Outputs, in ``<output_dir>/<name>/calibration/``: ``coverage.json`` (``{model: {level: coverage}}``),
``summary.json`` (bands, KS/C2ST/TARP checks, timing), ``coverage.png``, ``ranks_<model>.png``,
``tarp_<model>.png`` and ``records/<model>/obs_<j>.json``, one per observation and model, keyed
by their inputs: a rerun computes only missing or stale records.

Parallelism: the observations are dask tasks, each seeded from (seed, j), so the results do not
depend on the number of workers. By default ``mfinfer calibrate CONFIG --workers K`` starts a local
cluster of K worker processes. To use other machines (sharing the output directory and the
Python environment), start a scheduler and workers by hand and pass its address::

    dask scheduler                                    # prints: Scheduler at: tcp://10.0.0.1:8786
    dask worker tcp://10.0.0.1:8786 --nworkers 4 --nthreads 1     # on each machine
    mfinfer calibrate CONFIG --scheduler tcp://10.0.0.1:8786

``--quiet`` silences the progress messages and bar. Example:

    >>> from mfinfer.calibration import CalibrationConfig
    >>> CalibrationConfig(n_observations=100).models
    ['truth']
"""

from mfinfer.calibration.campaign import WorkerLostError, calibrate, format_result, sources
from mfinfer.calibration.config import DEFAULT_LEVELS, TRUTH, CalibrationConfig, Campaign, load_campaign
from mfinfer.calibration.observation import ObservationTask, Source, run_observation
from mfinfer.calibration.report import COVERAGE_FILE, SUMMARY_FILE, read_records, write_report

__all__ = [
    "COVERAGE_FILE",
    "DEFAULT_LEVELS",
    "SUMMARY_FILE",
    "TRUTH",
    "CalibrationConfig",
    "Campaign",
    "ObservationTask",
    "Source",
    "WorkerLostError",
    "calibrate",
    "format_result",
    "load_campaign",
    "read_records",
    "run_observation",
    "sources",
    "write_report",
]
