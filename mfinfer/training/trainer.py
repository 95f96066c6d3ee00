"""The training loop: AdamW, cosine learning rate, clipping, early stopping, atomic checkpoints.

A run directory holds ``checkpoint.pt`` (tensors and numbers only, loaded with
``weights_only=True``), its sidecar ``checkpoint.json`` (epoch and the SHA-256 of ``checkpoint.pt``,
written after it as a pair: see :func:`mfinfer.files.atomic_write_pair`; a resume refuses a
checkpoint that does not match it) and ``train_config.json`` (the identity of the run: the settings,
the model and the SHA-256 of the data; a resume refuses a run of another identity with
``ConfigError``). ``resume=True`` continues from the last completed epoch and ends with exactly the
weights of an uninterrupted run: batches are shuffled by a generator seeded from (seed, epoch), so
nothing random lives outside the checkpoint.

Event weights (``train(..., weights=w)``, e.g. generator weights, negative ones included): the loss
is the weighted mean Σ w_i ℓ_i / Σ w_i of the per-event losses ℓ_i in every schedule. Each batch B
contributes Σ_B w_i ℓ_i / (|B| w̄), w̄ the mean weight of the training split: an unbiased estimate
of that weighted mean whose normalisation does not depend on the batch (a batch whose weights nearly
cancel would make Σ_B w_i tiny or negative), and a pass over the split gives it exactly. The
validation loss is the weighted mean over the validation split. A split whose weights sum to zero
or less is refused (``InputError``). Negative weights make the loss noisier, not biased. The weights
are part of the run's identity (their SHA-256 in ``train_config.json``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mfinfer.caching import array_digest, canonical
from mfinfer.errors import ConfigError, CorruptFileError, NonFiniteLossError
from mfinfer.files import atomic_write_json, atomic_write_pair, open_pair, read_json, torch_load_tensors
from mfinfer.models import Flow
from mfinfer.models.base import Schedule
from mfinfer.schema import check_fields
from mfinfer.training.data import check_training_data, normalised_weights, split
from mfinfer.training.disk_rows import STANDARDIZE_ROWS, DiskRows, is_on_disk
from mfinfer.training.phases import PHASES, segments
from mfinfer.utils import progress_bar, resolve_device

__all__ = ["NonFiniteLossError", "TrainConfig", "train"]

#: TrainConfig fields that do not change the trained weights (left out of a run's identity).
_NOT_IDENTITY = ("progress", "device")


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (defaults from the paper's toy experiments), checked when built.

    Each field carries its allowed range in its metadata (``min``, ``gt``, ``lt``, as in
    :mod:`mfinfer.schema`); ``__post_init__`` checks every field against its annotation and that
    range, so a new setting is one line here (marked ``"keyed": "when set"``, see :meth:`identity`).
    A bad value raises ``ConfigError`` (a ``ValueError``) naming the field, the allowed range and
    the value got.

    Attributes:
        schedule: one of ``SCHEDULES``; None picks the model's default.
        epochs: total epochs (split between M and D for ``sequential``), >= 1.
        batch_size, lr, weight_decay: AdamW settings; the learning rate follows a cosine schedule.
        clip_grad: maximal gradient norm, > 0.
        validation_fraction: held-out share for early stopping, in [0, 1) (0: no validation split,
            the last epoch's weights are kept).
        patience: epochs without validation improvement before a segment stops (None: never), >= 1.
        mse_weight: weight of the reconstruction MSE in the M and S phases (the MSE is taken in
            standardised coordinates, so GeV-scale and angle columns count alike), >= 0.
        score_weight: weight w_s of the score term w_s ‖∇θ log p̂(x|θ) − t‖² added to each event's
            NLL (SCANDAL; :mod:`mfinfer.training.phases`); > 0 needs ``train(..., score=t)``, >= 0.
        standardize: fit the model's fixed input standardisation (mean, std per column) to the
            training data first; False keeps the identity (data already of order one).
        seed: seeds the split and the batch order, >= 0.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        progress: show progress bars (only when stderr is a terminal: quiet in logs).

    Example:
        >>> TrainConfig(epochs=2).epochs
        2
        >>> TrainConfig(mse_weight=-5.0)
        Traceback (most recent call last):
        ...
        mfinfer.errors.ConfigError: TrainConfig.mse_weight: expected a finite number >= 0, got -5.0
    """

    schedule: Schedule | None = None
    epochs: int = field(default=50, metadata={"min": 1})
    batch_size: int = field(default=100, metadata={"min": 1})
    lr: float = field(default=1e-3, metadata={"gt": 0})
    weight_decay: float = field(default=1e-5, metadata={"min": 0})
    clip_grad: float = field(default=5.0, metadata={"gt": 0})
    validation_fraction: float = field(default=0.25, metadata={"min": 0, "lt": 1})
    patience: int | None = field(default=10, metadata={"min": 1})
    mse_weight: float = field(default=1000.0, metadata={"min": 0})
    score_weight: float = field(default=0.0, metadata={"min": 0, "keyed": "when set"})
    standardize: bool = True
    seed: int = field(default=0, metadata={"min": 0})
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        check_fields(self, "TrainConfig")  # types, ranges and the schedule's choices

    def identity(self) -> dict[str, Any]:
        """The fields the trained weights depend on: all but ``progress`` and ``device``. A field
        added later carries ``metadata={"keyed": "when set"}`` and enters only away from its
        default, so that adding it leaves the identity (and content key) of every existing run as
        it was: such a run resumes and is not retrained."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in _NOT_IDENTITY
                and not (f.metadata.get("keyed") == "when set" and getattr(self, f.name) == f.default)}


def _batches(n: int, batch_size: int, seed: int, epoch: int) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return list(torch.randperm(n, generator=g).split(batch_size))


def _evaluate(
    model: Flow, loss, x: Tensor | DiskRows, theta: Tensor | DiskRows | None, rows: Tensor,
    batch_size: int, mse_weight: float, weights: Tensor | None = None,
    score: Tensor | DiskRows | None = None, score_weight: float = 0.0,
) -> float:
    """The mean loss over the rows ``rows`` of x (weighted by ``weights`` normalised to mean one,
    if given), taken in chunks of them."""
    if len(rows) == 0:
        return float("nan")
    total = 0.0
    with torch.no_grad():  # the S loss's Jacobian uses forward-mode AD, which needs no graph
        for idx in rows.split(max(batch_size, 1000)):
            total += _loss(loss, model, x, theta, idx, mse_weight, weights, score,
                           score_weight).item() * len(idx)
    return total / len(rows)


def _loss(loss, model: Flow, x: Tensor | DiskRows, theta: Tensor | DiskRows | None, idx: Tensor,
          mse_weight: float, weights: Tensor | None, score: Tensor | DiskRows | None = None,
          score_weight: float = 0.0) -> Tensor:
    """A phase's loss on the rows ``idx`` (weighted when ``weights`` is given; with the score term
    when ``score_weight > 0``)."""
    t = None if theta is None else theta[idx]
    extra: dict[str, Any] = {} if weights is None else {"weights": weights[idx]}
    if score is not None and score_weight > 0:
        extra.update(score=score[idx], score_weight=score_weight)
    return loss(model, x[idx], t, mse_weight, **extra)


def train(
    model: Flow,
    x: np.ndarray | Tensor,
    theta: np.ndarray | Tensor | None = None,
    config: TrainConfig | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    drop_invalid: bool = False,
    weights: np.ndarray | Tensor | None = None,
    score: np.ndarray | Tensor | None = None,
    stop: Callable[[list[dict]], bool] | None = None,
) -> list[dict]:
    """Train ``model`` on events x (n, D) simulated at θ (n, p); returns the per-epoch history.

    Args:
        model: any mfinfer model (``AmbientFlow``, ``ManifoldFlow``, ``FOMFlow``).
        x, theta: training data; θ is None for unconditional models. Memory-mapped arrays
            (``np.memmap``, as ``simulations:`` samples come) are read batch by batch and never
            copied whole (:mod:`mfinfer.training.disk_rows`).
        config: a ``TrainConfig``.
        run_dir: where to write ``checkpoint.pt`` each epoch (atomically); None keeps nothing.
        resume: continue from ``run_dir/checkpoint.pt`` if it exists.
        drop_invalid: drop NaN/inf rows with a warning instead of raising.
        weights: event weights (n,), negative ones allowed (see the module docstring); None: all 1.
        score: joint scores t = ∇θ log p(x, z|θ) (n, p) from the simulator
            (``simulate(n, rng, score=True)``); used when ``config.score_weight > 0``.
        stop: called with the history after each epoch (its checkpoint written); True ends the
            training there, with the segment's best weights so far (a wall-clock budget); the
            checkpoint stays mid-segment, so ``resume=True`` continues from it.

    Raises:
        ValueError: bad data (shapes, NaN/inf, weights whose total is not positive).
        ConfigError: resuming a checkpoint trained with other settings, another model or other
            data (``train_config.json`` differs: every TrainConfig field but ``progress`` and
            ``device``, the model's class and config, the SHA-256 of x and θ and of the weights).
        NonFiniteLossError: the loss became NaN/inf (names the phase, epoch and batch).
    """
    if getattr(model, "members", None) is not None:  # mfinfer.models.Ensemble
        raise ConfigError("model: an ensemble's members train one by one, each with its own seeds; use "
                          "mfinfer.training.train_ensemble(build, K, x, theta, config)")
    cfg = config or TrainConfig()
    schedule = cfg.schedule or model.default_schedule
    device = resolve_device(cfg.device)
    dtype = next(model.parameters()).dtype
    if cfg.score_weight > 0 and score is None:
        raise ConfigError(f"score_weight: {cfg.score_weight} needs the joint scores: pass score=t "
                          "(simulate(n, rng, score=True) gives them), or set score_weight=0")
    score = score if cfg.score_weight > 0 else None
    x_in, theta_in, w, score_in = check_training_data(x, theta, model.data_dim, model.param_dim,
                                                      drop_invalid, weights, score)
    # the data as given, before the cast to the model's dtype
    data_sha256 = array_digest(x_in, theta_in, *(() if score_in is None else (score_in,)))
    weights_sha256 = None if w is None else array_digest(w)
    rows, theta_rows, t_score = (None if a is None else _rows(a, device, dtype)
                                 for a in (x_in, theta_in, score_in))
    assert rows is not None
    model.to(device)
    train_idx, val_idx = split(len(rows), cfg.validation_fraction, cfg.seed)
    w_split = {}  # weights over x's rows, normalised to mean one within each split
    if w is not None:
        w_split = {"train": torch.zeros(len(rows), dtype=dtype), "val": torch.zeros(len(rows), dtype=dtype)}
        for part, idx in (("train", train_idx), ("val", val_idx)):
            norm = normalised_weights(w, idx, "training" if part == "train" else "validation")
            if norm is not None:
                w_split[part][idx] = norm.to(dtype)
        w_split = {k: v.to(device) for k, v in w_split.items()}
    if cfg.standardize:  # on resume the checkpoint restores them
        on_disk = isinstance(rows, DiskRows)  # fitted to a random subset of at most STANDARDIZE_ROWS
        model.fit_standardization(rows[train_idx[:STANDARDIZE_ROWS] if on_disk else train_idx])

    plan = segments(schedule, cfg.epochs)
    run_dir = Path(run_dir) if run_dir is not None else None
    ckpt_path = run_dir / "checkpoint.pt" if run_dir else None
    cfg_record = _identity(model, cfg, schedule, len(rows), data_sha256, weights_sha256)

    state: dict[str, Any] = {"segment": 0, "epoch": 0, "history": []}
    if resume and run_dir is not None and ckpt_path is not None and ckpt_path.exists():
        _check_identity(read_json(run_dir / "train_config.json"), cfg_record, run_dir)
        state = _load_checkpoint(ckpt_path, device)
        model.load_state_dict(state["model"])
    elif run_dir is not None:
        atomic_write_json(cfg_record, run_dir / "train_config.json")

    while state["segment"] < len(plan):
        _run_segment(model, plan, state, rows, theta_rows, train_idx, val_idx, cfg, ckpt_path, w_split,
                     t_score, stop)
        if state.pop("stopped", False):
            break
    return state["history"]


def _rows(a: Tensor | np.ndarray, device: torch.device, dtype: torch.dtype) -> Tensor | DiskRows:
    """A training array on ``device`` as ``dtype``: an on-disk one read batch by batch."""
    if is_on_disk(a):
        return DiskRows(a, dtype, device)
    return torch.as_tensor(a).to(device, dtype)


def _identity(model: Flow, cfg: TrainConfig, schedule: str, n_train: int, data_sha256: str,
              weights_sha256: str | None = None) -> dict:
    """What a checkpoint's weights depend on, as ``train_config.json`` records it: every TrainConfig
    field but ``progress`` and ``device``, the schedule, the model (class and config) and the
    training data (size and SHA-256 of the float64 bytes of x and θ, and of the event weights;
    None without weights, as a record from before weights existed reads)."""
    return canonical({**cfg.identity(), "schedule": schedule, "model": {"kind": type(model).__name__,
                                                                "config": model.config},
                      "n_train": n_train, "data_sha256": data_sha256, "weights_sha256": weights_sha256})


def _check_identity(saved: Any, now: dict, run_dir: Path) -> None:
    """Refuse to resume a checkpoint whose identity (``train_config.json``) differs from ``now``."""
    saved = saved if isinstance(saved, dict) else {}
    changed = [k for k in now if saved.get(k) != now[k]]
    if changed:
        diffs = "; ".join(f"{k}: {_short(saved.get(k, '(not recorded)'))} -> {_short(now[k])}"
                          for k in changed)
        raise ConfigError(f"resume: {run_dir} holds a checkpoint trained with other settings or data "
                          f"({diffs}); train into a new run_dir, or delete {run_dir} to train from scratch")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


CHECKPOINT_SIDECAR = "checkpoint.json"
_CKPT_KEYS = ("segment", "epoch", "history", "model")
_CKPT_FIX = ("delete checkpoint.pt and checkpoint.json from the run directory to train from scratch, "
             "or restore both from a backup")


def _save_checkpoint(state: dict[str, Any], ckpt_path: Path) -> None:
    """``checkpoint.pt`` then ``checkpoint.json`` (its SHA-256), atomically as a pair."""
    atomic_write_pair({ckpt_path: lambda f: torch.save(state, f)}, ckpt_path.with_name(CHECKPOINT_SIDECAR),
                      {"segment": state["segment"], "epoch": state["epoch"]})


def _load_checkpoint(ckpt_path: Path, device: torch.device) -> dict[str, Any]:
    """The checkpoint's state, checked against the SHA-256 in ``checkpoint.json`` (a run directory
    from before the sidecar existed has none and loads unchecked)."""
    with open_pair(ckpt_path.with_name(CHECKPOINT_SIDECAR), [ckpt_path.name], fix=_CKPT_FIX,
                   hint="a checkpoint written by train", require_sidecar=False) as (_, files):
        state = torch_load_tensors(files[ckpt_path.name], ckpt_path, map_location=device, fix=_CKPT_FIX)
    missing = [k for k in _CKPT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        got = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
        raise CorruptFileError(f"{ckpt_path}: expected a checkpoint with the keys {list(_CKPT_KEYS)}, "
                               f"missing {missing} (got {got}); {_CKPT_FIX}")
    return state


def _run_segment(model, plan, state, x, theta, train_idx, val_idx, cfg, ckpt_path, weights=None,
                 score=None, stop_hook=None) -> None:
    weights = weights or {}
    w_train, w_val = weights.get("train"), weights.get("val")
    seg = state["segment"]
    phases, n_epochs = plan[seg]
    params = {p: PHASES[p].parameters(model) for p in phases}
    # foreach: one multi-tensor update instead of a loop over ~100 tensors (torch picks it by
    # itself on CUDA but not on CPU); the same update, bit for bit
    foreach = True if next(model.parameters()).device.type == "cpu" else None
    opts = {p: torch.optim.AdamW(params[p], lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=foreach)
            for p in phases}
    n_batches = math.ceil(len(train_idx) / cfg.batch_size)
    scheds = {
        p: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=n_epochs * n_batches) for p, o in opts.items()
    }
    best = {"val": math.inf, "weights": copy.deepcopy(model.state_dict()), "bad": 0}
    if state["epoch"] > 0:  # resuming mid-segment
        for p in phases:
            opts[p].load_state_dict(state["optim"][p])
            scheds[p].load_state_dict(state["sched"][p])
        best = {"val": state["best_val"], "weights": state["best_weights"], "bad": state["bad_epochs"]}

    bar = progress_bar(range(state["epoch"], n_epochs), cfg.progress, desc=f"train {'+'.join(phases)}",
                       initial=state["epoch"], total=n_epochs, leave=False)
    global_epoch = sum(e for _, e in plan[:seg])
    for epoch in bar:
        model.train()
        record = {"segment": seg, "phases": "+".join(phases), "epoch": global_epoch + epoch}
        for p in phases:
            run_loss = 0.0
            batches = _batches(len(train_idx), cfg.batch_size, cfg.seed, global_epoch + epoch)
            for b, batch in enumerate(batches):
                idx = train_idx[batch]
                loss = _loss(PHASES[p].loss, model, x, theta, idx, cfg.mse_weight, w_train, score,
                             cfg.score_weight)
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"loss is {loss.item()} in phase {p}, epoch {global_epoch + epoch}, batch {b}; "
                        f"the last good checkpoint is {ckpt_path or '(none: no run_dir)'}; "
                        "try a lower lr or check the data scale"
                    )
                if not loss.requires_grad:
                    raise ValueError(
                        f"phase {p}: the loss does not depend on the trained parameters, so the inputs "
                        "lie where every spline is the identity (outside its tail bound); standardise "
                        "the data (TrainConfig(standardize=True)) or raise the model's tail_bound"
                    )
                opts[p].zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(params[p], cfg.clip_grad)
                opts[p].step()
                scheds[p].step()
                run_loss += loss.item() * len(idx)
            record[f"train_{p}"] = run_loss / len(train_idx)
            record[f"lr_{p}"] = opts[p].param_groups[0]["lr"]
        model.eval()
        val = sum(_evaluate(model, PHASES[p].loss, x, theta, val_idx, cfg.batch_size, cfg.mse_weight,
                            w_val, score, cfg.score_weight)
                  for p in phases)
        record["val"] = val
        state["history"].append(record)
        bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k.startswith(("train", "val"))})
        if not len(val_idx) or val < best["val"]:
            best = {"val": val, "weights": copy.deepcopy(model.state_dict()), "bad": 0}
        else:
            best["bad"] += 1
        stop = cfg.patience is not None and best["bad"] >= cfg.patience
        done = stop or epoch + 1 == n_epochs
        if done:
            model.load_state_dict(best["weights"])
            state.update(segment=seg + 1, epoch=0)
            for k in ("optim", "sched", "best_val", "best_weights", "bad_epochs"):
                state.pop(k, None)
        else:
            state.update(epoch=epoch + 1, optim={p: o.state_dict() for p, o in opts.items()},
                         sched={p: s.state_dict() for p, s in scheds.items()},
                         best_val=best["val"], best_weights=best["weights"], bad_epochs=best["bad"])
        if ckpt_path is not None:
            state["model"] = model.state_dict()
            _save_checkpoint(state, ckpt_path)
        if stop_hook is not None and stop_hook(state["history"]):
            if not done:
                model.load_state_dict(best["weights"])
            state["stopped"] = True
            break
        if done:
            break
    bar.close()
