"""Run directories keyed by content: posteriors follow their events, a changed setting redoes only
the stages it affects, seeds follow model names, a resume refuses other data, and a run killed
mid-write resumes to the same metrics.json."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mfinfer import get_simulator
from mfinfer.caching import array_digest, content_key, stable_words
from mfinfer.cli import main
from mfinfer.config import RunConfig, load_config
from mfinfer.errors import ConfigError
from mfinfer.inference import Posterior, PosteriorSpec
from mfinfer.models import AmbientFlow
from mfinfer.pipeline import Run, run_all
from mfinfer.training import TrainConfig, train

TINY = Path(__file__).parent / "configs" / "tiny.yaml"
pytestmark = pytest.mark.filterwarnings("ignore:sample_emcee:UserWarning")  # short chains on purpose
FAST_MCMC = PosteriorSpec.from_options(method="emcee", num_samples=100, num_walkers=8, max_steps=200)


def _fast(output_dir: Path, **changes) -> RunConfig:
    """The tiny config with a short MCMC and no truth posterior, writing under ``output_dir``."""
    cfg = load_config(TINY)
    return dataclasses.replace(cfg, posterior=FAST_MCMC, truth=False, output_dir=str(output_dir), **changes)


def _write_yaml(cfg: RunConfig, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path


def _seed_dir(cfg: RunConfig) -> Path:
    return Path(cfg.output_dir) / cfg.name / "seed_0"


def _mtimes(root: Path, pattern: str) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.glob(pattern))}


def _weights(run: Path, name: str) -> dict:
    return torch.load(run / "models" / name / "final" / "weights.pt", weights_only=True)


def _samples(run: Path, point: str, name: str) -> np.ndarray:
    return Posterior.load(run / "posteriors" / f"point_{point}" / f"{name}.npz").samples


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[RunConfig, Path]:
    """An uninterrupted run of the fast tiny config, every stage (shared; tests copy it to change it)."""
    cfg = _fast(tmp_path_factory.mktemp("base"))
    run_all(cfg, progress=False)
    return cfg, _seed_dir(cfg)


def _copy(base: tuple[RunConfig, Path], tmp_path: Path, **changes) -> tuple[RunConfig, Path]:
    cfg, run = base
    new = dataclasses.replace(cfg, output_dir=str(tmp_path), **changes)
    shutil.copytree(run, _seed_dir(new), copy_function=shutil.copy2)
    return new, _seed_dir(new)


def test_content_keys_and_stable_words():
    a = np.arange(6.0).reshape(2, 3)
    assert array_digest(a) == array_digest(a.astype(np.float32)) == array_digest(np.asfortranarray(a))
    assert array_digest(a) != array_digest(a.reshape(3, 2))
    assert content_key({"x": 1, "y": (1, 2)}) == content_key({"y": [1, 2], "x": 1})
    assert content_key({"x": a}) != content_key({"x": a + 1e-12})
    # pinned: from SHA-256, never Python's per-process salted hash()
    assert stable_words("AF") == [3990106523, 617318131, 3664874532, 4144122978]


def test_events_are_keyed_by_content_not_by_file_name(base, tmp_path, capsys):
    """`mfinfer infer --events b/data.npz` after a/data.npz prints b's posterior, not a's."""
    cfg, run_dir = _copy(base, tmp_path)
    config = _write_yaml(cfg, tmp_path / "config.yaml")
    sim = get_simulator("power")
    a = sim.sample(np.full((5, 1), 0.2), np.random.default_rng(1))
    b = sim.sample(np.full((5, 1), -0.3), np.random.default_rng(2))
    files = {}
    for name, x in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        files[name] = tmp_path / name / "data.npz"
        np.savez(files[name], x=x)

    def infer(path: Path) -> str:
        """The posterior lines (without the summary line, which has counts and seconds)."""
        assert main(["infer", str(config), "--events", str(path), "--quiet"]) == 0
        return capsys.readouterr().out.rpartition("mfinfer infer: ")[0]

    out_a = infer(files["a"])
    from_a = _samples(run_dir, "data", "AF")
    out_b = infer(files["b"])  # another file with the same stem: sampled again
    assert out_b != out_a and not np.array_equal(_samples(run_dir, "data", "AF"), from_a)
    meta = json.loads((run_dir / "posteriors" / "point_data" / "AF.json").read_text())["metadata"]
    assert meta["key"] and meta["n_events"] == 5
    stamp = _mtimes(run_dir, "posteriors/point_data/*")
    assert infer(files["b"]) == out_b  # the same events again: cached
    assert _mtimes(run_dir, "posteriors/point_data/*") == stamp
    np.savez(files["b"], x=a)  # b/data.npz changed in place to a's events: a's posterior exactly
    assert infer(files["b"]) == out_a
    np.testing.assert_array_equal(_samples(run_dir, "data", "AF"), from_a)


def test_changing_mcmc_reruns_infer_and_evaluate_but_keeps_models(base, tmp_path):
    cfg, run_dir = _copy(base, tmp_path, posterior=dataclasses.replace(FAST_MCMC, num_samples=120))
    models = _mtimes(run_dir, "models/**/*")
    old = json.loads((run_dir / "metrics.json").read_text())
    # a stage run alone refuses what the stage before would have to redo
    with pytest.raises(ConfigError, match=r"AF.npz: missing, or sampled with other inputs.*'infer' stage"):
        Run(cfg, 0, progress=False).evaluate()
    metrics = Run(cfg, 0, progress=False).run()  # no "made with a different config" refusal
    assert _mtimes(run_dir, "models/**/*") == models
    assert len(_samples(run_dir, "0", "AF")) == 120
    assert metrics is not None and metrics["inputs_key"] != old["inputs_key"]
    assert "num_samples: 120" in (run_dir / "config.yaml").read_text()  # provenance of the latest pass


def test_changing_metrics_reruns_only_evaluate(base, tmp_path):
    cfg, run_dir = _copy(base, tmp_path, metrics={"n_model_samples": 150, "c2st": False})
    before = _mtimes(run_dir, "[dm]*/**/*") | _mtimes(run_dir, "posteriors/**/*")
    metrics = Run(cfg, 0, progress=False).run()
    assert _mtimes(run_dir, "[dm]*/**/*") | _mtimes(run_dir, "posteriors/**/*") == before
    assert metrics is not None
    assert "c2st" not in metrics["points"][0]["models"]["AF"]


def test_changing_one_model_retrains_only_that_model(base, tmp_path):
    cfg0, _ = base
    af, mf = cfg0.models
    changed = dataclasses.replace(mf, options={**mf.options, "hidden_features": 8})
    cfg, run_dir = _copy(base, tmp_path, models=[af, changed])
    af_files = _mtimes(run_dir, "models/AF/**/*") | _mtimes(run_dir, "posteriors/point_0/AF.*")
    Run(cfg, 0, progress=False).run(("simulate", "train", "infer"))
    assert _mtimes(run_dir, "models/AF/**/*") | _mtimes(run_dir, "posteriors/point_0/AF.*") == af_files
    model = json.loads((run_dir / "models" / "MF-seq" / "final" / "model.json").read_text())
    assert model["config"]["hidden_features"] == 8
    identity = json.loads((run_dir / "models" / "MF-seq" / "identity.json").read_text())
    assert identity["inputs"]["options"]["hidden_features"] == 8


def test_new_training_data_retrains_in_a_fresh_directory(base, tmp_path):
    """Data of another size (and so other content) replace the old checkpoints, not an error."""
    cfg, run_dir = _copy(base, tmp_path, n_train=500)
    stale = run_dir / "models" / "AF" / "checkpoint.pt"
    assert stale.is_file()
    Run(cfg, 0, progress=False).run(("simulate", "train"))
    saved = json.loads((run_dir / "models" / "AF" / "train_config.json").read_text())
    assert saved["n_train"] == 500
    assert not any(torch.equal(v, _weights(base[1], "AF")[k]) for k, v in _weights(run_dir, "AF").items()
                   if v.ndim == 2)


def test_force_reruns_the_requested_stages(base, tmp_path):
    cfg, run_dir = _copy(base, tmp_path)
    before = _mtimes(run_dir, "posteriors/**/*") | _mtimes(run_dir, "models/*/final/*")
    Run(cfg, 0, progress=False).run(("infer",), force=True)
    after = _mtimes(run_dir, "posteriors/**/*") | _mtimes(run_dir, "models/*/final/*")
    assert all(after[p] != t for p, t in before.items() if p.startswith("posteriors"))
    assert all(after[p] == t for p, t in before.items() if p.startswith("models"))
    np.testing.assert_array_equal(_samples(run_dir, "0", "AF"), _samples(base[1], "0", "AF"))
    run_all(cfg, ("evaluate",), progress=False, force=True)
    assert json.loads((run_dir / "metrics.json").read_text()) == \
        json.loads((base[1] / "metrics.json").read_text())


def test_adding_removing_or_reordering_models_changes_no_other_model(base, tmp_path):
    cfg0, run0 = base
    af, mf = cfg0.models
    extra = dataclasses.replace(af, name="AF-wide", options={**af.options, "hidden_features": 24})
    variants = {"reordered+added": [mf, extra, af], "removed": [mf]}
    for label, models in variants.items():
        cfg = dataclasses.replace(cfg0, models=models, output_dir=str(tmp_path / label.replace("+", "_")))
        Run(cfg, 0, progress=False).run(("simulate", "train", "infer"))
        run = _seed_dir(cfg)
        assert "training MF-seq" in (run / "log.txt").read_text()  # logs here, not in the base run
        for m in models:
            if m.name in ("AF", "MF-seq"):
                w0, w = _weights(run0, m.name), _weights(run, m.name)
                assert w.keys() == w0.keys() and all(torch.equal(w[k], w0[k]) for k in w), (label, m.name)
                np.testing.assert_array_equal(_samples(run, "0", m.name), _samples(run0, "0", m.name),
                                              err_msg=f"{label}: {m.name}")
        seeds = json.loads((run / "seeds.json").read_text())
        assert seeds["init_torch_seed"]["MF-seq"] == \
            json.loads((run0 / "seeds.json").read_text())["init_torch_seed"]["MF-seq"]
        assert "SHA-256" in seeds["rule"]


def test_resume_refuses_other_data_and_settings(tmp_path):
    _, x = get_simulator("circle").simulate(200, rng=1)
    cfg = TrainConfig(epochs=2, batch_size=50, patience=None, progress=False)
    torch.manual_seed(0)
    train(AmbientFlow(2, num_layers=1, hidden_features=8, num_blocks=1), x, config=cfg,
          run_dir=tmp_path, resume=True)
    fresh = AmbientFlow(2, num_layers=1, hidden_features=8, num_blocks=1)
    other = x.copy()
    other[0, 0] += 1e-9  # same size, other data
    with pytest.raises(ConfigError, match=r"holds a checkpoint trained with other settings or data "
                       r"\(data_sha256: .*; train into a new run_dir, or delete .* to train from scratch"):
        train(fresh, other, config=cfg, run_dir=tmp_path, resume=True)
    with pytest.raises(ConfigError, match=rf"{tmp_path}.*\(weight_decay: 1e-05 -> 0\.1\)"):
        train(fresh, x, config=dataclasses.replace(cfg, weight_decay=0.1), run_dir=tmp_path, resume=True)
    # progress and device do not change the weights: the same run resumes
    train(fresh, x, config=dataclasses.replace(cfg, progress=True, device="cpu"), run_dir=tmp_path,
          resume=True)


def _start(config: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "mfinfer.cli", "run", str(config), "--output-dir",
                             str(out), "--quiet"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _kill_when(proc: subprocess.Popen, appears: list[Path], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(p.exists() for p in appears):
        assert proc.poll() is None, f"finished before the kill: {proc.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "timed out waiting to kill"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_sigkill_mid_write_then_rerun_gives_the_uninterrupted_metrics(base, tmp_path):
    cfg0, run0 = base
    config = _write_yaml(cfg0, tmp_path / "fast.yaml")
    out = tmp_path / "runs"
    run = out / cfg0.name / "seed_0"
    # killed as the first model's final/ appears (mid-save), then as the first posterior's temp does
    point = run / "posteriors" / "point_0"
    for appears in ([run / "models" / "AF" / "final", run / "models" / "MF-seq" / "final"],
                    [point / ".tmp", point / "AF.json", point / "MF-seq.json"]):
        _kill_when(_start(config, out), appears)
        assert not (run / "metrics.json").exists()
    proc = _start(config, out)
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
    left = [p for p in out.rglob("*") if ".tmp" in p.parts and p.is_file()]
    assert left == []
    assert json.loads((run / "metrics.json").read_text()) == json.loads((run0 / "metrics.json").read_text())
