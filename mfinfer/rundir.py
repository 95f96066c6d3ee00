"""The run directory of one seed: where things go, its log, its provenance and its seeds.

``<output_dir>/<name>/seed_<seed>/`` (the layout is in :mod:`mfinfer.pipeline`). Opening one
(:class:`RunDirectory`) creates it, removes the temps of writers killed mid-write
(:func:`mfinfer.files.clean_temp`), logs to its ``log.txt`` and writes the provenance of the pass:
``config.yaml`` (the config of the latest pass, for provenance only) and ``seeds.json`` (the rule
that gives every stage its seed). Seeds come from (seed, stage, point, model name), never from
positions in the config, so adding, removing or reordering models leaves the others' results
bit-identical.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mfinfer.caching import seed_sequence, torch_seed
from mfinfer.config import ModelConfig, RunConfig
from mfinfer.files import atomic_write, atomic_write_json, clean_temp

__all__ = ["IDENTITY", "SEED_STAGES", "RunDirectory", "load_npz", "path_name"]

#: The stage code that follows the seed in every seed sequence.
SEED_STAGES = {"simulate": 0, "observed": 1, "infer": 2, "evaluate": 3, "train": 4, "gate": 5,
               "calibrate": 6}
#: A trained model's content key file, ``models/<model>/identity.json``.
IDENTITY = "identity.json"


def path_name(name: str) -> str:
    """A model name as a file or folder name: '/' becomes '-'; a name that breaks the one rule of
    names (:data:`mfinfer._validation.NAME_RULE`, e.g. ``..``) is an ``InputError``.

    Example:
        >>> path_name("M-flow (M/D sequential)")
        'M-flow (M-D sequential)'
    """
    from mfinfer._validation import path_name as checked

    return checked(name)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a stored ``.npz`` (never unpickled); ``FileNotFoundError`` naming the stage
    that writes it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run the 'simulate' stage first")
    with np.load(path, allow_pickle=False) as f:
        return dict(f)


class RunDirectory:
    """The directory of one seed of a run: paths, log and seeds (see the module docstring).

    Attributes:
        config: the run's validated config.
        seed: the seed.
        dir: ``<output_dir>/<name>/seed_<seed>``.
        log: the logger that writes ``dir/log.txt``.
    """

    def __init__(self, config: RunConfig, seed: int) -> None:
        self.config, self.seed = config, seed
        self.dir = Path(config.output_dir) / config.name / f"seed_{seed}"
        self.dir.mkdir(parents=True, exist_ok=True)
        for directory, _, _ in os.walk(self.dir):  # temps of writers killed mid-write
            clean_temp(directory)
        self.log = _file_logger(f"mfinfer.run.{config.name}.{seed}", self.dir / "log.txt")
        self._write_provenance()

    def rng(self, stage: str, *labels: str | int) -> np.random.Generator:
        """The generator of ``stage`` (a key of ``SEED_STAGES``) for ``labels`` (point, model...)."""
        return np.random.default_rng(seed_sequence(self.seed, SEED_STAGES[stage], *labels))

    def init_seed(self, name: str) -> int:
        """The torch seed set before model ``name`` is built."""
        return torch_seed(seed_sequence(self.seed, SEED_STAGES["train"], name))

    def data_path(self, k: int | None) -> Path:
        """``data/train.npz`` (k None) or ``data/observed_<k>.npz``."""
        return self.dir / "data" / ("train.npz" if k is None else f"observed_{k}.npz")

    def model_dir(self, model: ModelConfig) -> Path:
        """``models/<model>``: identity, checkpoints, ``final/`` weights, gate."""
        return self.dir / "models" / path_name(model.name)

    def posterior_path(self, k: int | str, name: str) -> Path:
        """``posteriors/point_<k>/<model>.npz`` (its JSON sidecar next to it)."""
        return self.dir / "posteriors" / f"point_{k}" / f"{path_name(name)}.npz"

    def check_trained(self, config_path: str | Path) -> None:
        """Refuse to infer in a run that lacks its simulations or trained models.

        Arguments:
            config_path: the config file, named in the commands of the message; a ``quick.yaml``
                next to it is offered as the quick alternative.

        Raises:
            InputError: naming every missing part (``data/train.npz``, each model's ``final/``),
                the commands that make them and the quick alternative.
        """
        from mfinfer.errors import InputError

        missing = []
        if self.config.simulator is not None and not self.data_path(None).is_file():
            missing.append("simulations (data/train.npz)")
        untrained = [m.name for m in self.config.models
                     if not (self.model_dir(m) / "final" / "model.json").is_file()]
        if untrained:
            missing.append(f"trained models {untrained} (models/<name>/final)")
        if not missing:
            return
        quick = Path(config_path).with_name("quick.yaml")
        alternative = (f", or try a quick run of a few minutes: `mfinfer run {quick}`, then `mfinfer "
                       f"infer {quick} ...`" if quick.is_file() and
                       quick.resolve() != Path(config_path).resolve() else "")
        raise InputError(f"{self.dir}: infer needs the run's {' and '.join(missing)}, which are missing; "
                         f"make them with `mfinfer simulate {config_path}` then `mfinfer train "
                         f"{config_path}` (training is the long part){alternative}")

    def _write_provenance(self) -> None:
        # the config of the latest pass; where the directory lives and the other seeds don't matter
        record = {k: v for k, v in self.config.to_dict().items() if k not in ("output_dir", "seeds")}
        atomic_write(self.dir / "config.yaml", lambda f: f.write(yaml.safe_dump(record, sort_keys=False)),
                     "w")
        atomic_write_json(self._seed_rule(), self.dir / "seeds.json")

    def _seed_rule(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "rule": "numpy.random.SeedSequence([seed, stage code, *labels]); a text label enters as "
                    "the 4 little-endian 32-bit words of the first 16 bytes of its UTF-8 SHA-256 "
                    "(mfinfer.caching.seed_sequence), so no seed depends on a model's position",
            "stage_codes": SEED_STAGES,
            "simulate": [self.seed, 0], "observed": "[seed, 1, k] for true point k",
            "train": "torch.manual_seed(torch_seed(SeedSequence([seed, 4, *words(model name)]))) "
                     "before the model is built; split and batch order from TrainConfig.seed = seed",
            "infer": "[seed, 2, *words('point_<k>' or 'events'), *words(model name or 'truth')]",
            "evaluate": [self.seed, 3],
            "gate": "[seed, 5, *words('reference')] for the reference simulations, [seed, 5, "
                    "*words('theta')] for the prior draws of the score",
            "init_torch_seed": {m.name: self.init_seed(m.name) for m in self.config.models},
        }


def _file_logger(name: str, path: Path) -> logging.Logger:
    """The logger ``name``, writing to ``path`` (a handler of another path is replaced)."""
    log = logging.getLogger(name)
    log_path = os.path.abspath(path)
    for old in list(log.handlers):  # one of another output_dir: log here instead
        if getattr(old, "baseFilename", log_path) != log_path:
            log.removeHandler(old)
            old.close()
    if not log.handlers:
        handler = logging.FileHandler(log_path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    return log
