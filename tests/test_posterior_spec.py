"""The posterior spec (one place for sampler options), method="auto", self-tuning SMC, and the
spec's paths through the estimator, run config, calibration config and CLI."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from mfinfer.calibration.config import CalibrationConfig
from mfinfer.cli import _config, build_parser
from mfinfer.config import load_config
from mfinfer.errors import ConfigError, InputError
from mfinfer.inference import (
    GridResult,
    LikelihoodEstimator,
    MCMCResult,
    Posterior,
    PosteriorSpec,
    SMCOptions,
    SMCResult,
    sample_posterior,
)
from mfinfer.models import AmbientFlow, ManifoldFlow
from mfinfer.priors import BoxUniform, Gaussian

TINY = Path(__file__).parent / "configs" / "tiny.yaml"


def write_config(tmp: Path) -> Path:
    """tests/configs/tiny.yaml (posterior: emcee with 8 walkers), its output under ``tmp``."""
    data = yaml.safe_load(TINY.read_text())
    data["output_dir"] = str(tmp / "runs")
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# ---------------------------------------------------------------- the spec


def test_defaults_and_typed_options():
    spec = PosteriorSpec()
    assert spec.method == "auto" and spec.num_samples == 5000
    assert spec.options("smc") == SMCOptions() and spec.options("grid").tol == 0.01
    spec = PosteriorSpec.from_options(method="smc", num_samples=100, max_moves=7)
    assert spec.smc is not None and spec.smc.max_moves == 7 and spec.grid is None
    assert PosteriorSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(("options", "match"), [
    ({"method": "grid", "max_steps": 20_000}, "max_steps: an option of method 'emcee', but method is 'grid'"),
    ({"method": "grid", "max_steps": 20_001}, "max_steps: an option of method 'emcee', but method is 'grid'"),
    ({"method": "emcee", "tol": 0.1}, "tol: an option of method 'grid', but method is 'emcee'"),
    ({"method": "emcee", "max_moves": 5}, "max_moves: an option of method 'smc', but method is 'emcee'"),
    ({"num_walkers": 8}, "num_walkers: an option of method 'emcee', but method is 'auto'"),
    ({"method": "smc", "max_moves": 0}, r"smc.max_moves: expected an integer >= 1, got 0"),
    ({"method": "smc", "min_moved": 1.5}, r"smc.min_moved: expected a fraction in \(0, 1\]"),
    ({"method": "emcee", "num_walkers": 7}, "emcee.num_walkers: emcee's stretch move needs an even"),
    ({"method": "hmc"}, "method: must be one of"),
    ({"num_samples": 0}, "num_samples: expected an integer >= 1"),
    ({"max_move": 5}, r"max_move: unknown option; allowed: \['max_moves'"),
])
def test_spec_errors_name_the_option_and_its_method(options, match):
    with pytest.raises(ConfigError, match=match):
        PosteriorSpec.from_options(**options)


def test_config_paths_in_errors():
    with pytest.raises(ConfigError, match=r"posterior.smc.max_moves: expected an integer >= 1"):
        PosteriorSpec.from_dict({"method": "smc", "smc": {"max_moves": 0}})
    with pytest.raises(ConfigError, match=r"posterior.emcee: options of method 'emcee', but method is 'smc'"):
        PosteriorSpec.from_dict({"method": "smc", "emcee": {"num_walkers": 8}})
    with pytest.raises(ConfigError, match=r"posterior.grid.max_moves: unknown grid option"):
        PosteriorSpec.from_dict({"grid": {"max_moves": 3}})


def test_replace_with_another_method_drops_the_old_methods_options():
    spec = PosteriorSpec.from_options(method="emcee", num_walkers=8).replace(method="grid")
    assert spec.method == "grid" and spec.emcee is None


# ---------------------------------------------------------------- samplers vs analytic posteriors


def _gauss_like(mean: np.ndarray, sigma: float):
    return lambda t: -0.5 * np.sum(((t - mean) / sigma) ** 2, axis=1)


@pytest.mark.parametrize(("method", "kind"), [
    ("auto", GridResult), ("grid", GridResult), ("smc", SMCResult), ("emcee", MCMCResult)])
def test_each_method_matches_an_analytic_posterior(method, kind):
    """Gaussian likelihood N(θ; m, 0.2² I) in a wide box: the posterior is N(m, 0.2² I)."""
    mean = np.array([0.3, -0.2])
    res = sample_posterior(_gauss_like(mean, 0.2), BoxUniform((-3.0, -3.0), (3.0, 3.0)), 3000,
                           method=method, rng=1, progress=False)
    assert isinstance(res, kind) and res.converged
    np.testing.assert_allclose(res.samples.mean(0), mean, atol=0.03)
    np.testing.assert_allclose(res.samples.std(0), 0.2, rtol=0.1)
    assert stats.kstest(res.samples[:, 0], stats.norm(mean[0], 0.2).cdf).pvalue > 1e-3


def test_auto_uses_smc_above_three_parameters_and_records_why(caplog):
    mean = np.array([0.5, -0.5, 0.0, 0.2])
    with caplog.at_level(logging.INFO, logger="mfinfer.inference"):
        post = Posterior.from_spec(_gauss_like(mean, 0.3), BoxUniform((-3.0,) * 4, (3.0,) * 4), 2000,
                                   rng=0)
    assert post.smc is not None and post.smc.converged
    assert "p = 4 > 3" in post.metadata["sampler"]["fallback"] and "p = 4 > 3" in caplog.text
    assert post.metadata["sampler"]["method"] == "smc" and post.metadata["sampler"]["requested"] == "auto"
    np.testing.assert_allclose(post.mean, mean, atol=0.05)
    assert post.summary()["smc"]["fallback"] == post.metadata["sampler"]["fallback"]


def test_auto_falls_back_to_smc_when_the_grid_fails_its_checks(caplog):
    with caplog.at_level(logging.WARNING, logger="mfinfer.inference"):
        post = Posterior.from_spec(_gauss_like(np.array([0.1]), 0.1), BoxUniform((-2.0,), (2.0,)), 1000,
                                   max_evaluations=70, rng=0)
    assert post.smc is not None and post.grid is None
    assert "evaluation budget" in post.metadata["sampler"]["fallback"]
    assert "falling back to SMC" in caplog.text and "evaluation budget" in caplog.text
    np.testing.assert_allclose(post.mean, [0.1], atol=0.02)


def test_smc_converges_by_itself_on_a_5d_bimodal_posterior():
    """w1 N(μ1, σ²I) + w2 N(μ2, σ²I) likelihood in a box: the posterior is that mixture (the box
    cuts < 1e-9 of it); mode weights, means and variances are known exactly. Default options."""
    p, sigma, w1, w2 = 5, 0.3, 0.3, 0.7
    mu1, mu2 = -np.ones(p), np.ones(p)

    def log_like(t: np.ndarray) -> np.ndarray:
        a = np.log(w1) - 0.5 * np.sum(((t - mu1) / sigma) ** 2, axis=1)
        return np.logaddexp(a, np.log(w2) - 0.5 * np.sum(((t - mu2) / sigma) ** 2, axis=1))

    res = sample_posterior(log_like, BoxUniform((-4.0,) * p, (4.0,) * p), 2000, rng=0)
    assert isinstance(res, SMCResult) and res.converged, res.reason
    assert (res.stage_moves <= SMCOptions().max_moves).all() and res.stage_moves.max() > 2
    assert (res.stage_correlation <= SMCOptions().max_correlation).all()
    x = res.samples
    assert abs((x.sum(1) > 0).mean() - w2) < 0.05  # mode weights
    np.testing.assert_allclose(x.mean(0), w1 * mu1 + w2 * mu2, atol=0.12)
    np.testing.assert_allclose(x.var(0), sigma**2 + w1 * w2 * 4, rtol=0.12)


def test_smc_reports_not_converged_at_its_cap():
    """One sweep per stage cannot pass the stage checks: not converged, the reason named."""
    with pytest.warns(UserWarning, match="did not mix within max_moves=1"):
        res = sample_posterior(_gauss_like(np.zeros(4), 0.3), Gaussian((0.0,) * 4, (1.0,) * 4), 500,
                               method="smc", max_moves=1, rng=0)
    assert not res.converged and "max_moves=1" in res.reason


# ---------------------------------------------------------------- the estimator


def test_build_posterior_is_keyword_only_and_mode_follows_the_model():
    prior = BoxUniform((-1.0,), (1.0,))
    est = LikelihoodEstimator(AmbientFlow(2, param_dim=1, num_layers=1), prior)
    with pytest.raises(TypeError):
        est.build_posterior("manifold")  # type: ignore[misc]
    assert est.build_posterior().mode == "manifold"
    with pytest.raises(InputError, match=r"mode: AmbientFlow offers the densities \('manifold',\)"):
        est.build_posterior(mode="pie")
    mflow = LikelihoodEstimator(ManifoldFlow(3, 2, param_dim=1), prior)
    assert mflow.build_posterior(mode="pie").mode == "pie"
    with pytest.raises(ConfigError, match="max_steps: an option of method 'emcee'"):
        est.build_posterior(method="grid", max_steps=100)


def test_estimator_posterior_records_the_sampler():
    prior = BoxUniform((-1.0,), (1.0,))
    post = LikelihoodEstimator(AmbientFlow(2, param_dim=1, num_layers=1), prior).build_posterior(rng=0)
    out = post.posterior(300, x=np.zeros((5, 2)))
    assert out.metadata["sampler"]["method"] == "grid" and out.samples.shape == (300, 1)
    assert post.sample(200, x=np.zeros((5, 2)), method="smc").shape == (200, 1)


# ---------------------------------------------------------------- configs and the CLI


def test_old_mcmc_section_maps_with_a_warning(tmp_path, caplog):
    path = write_config(tmp_path)
    data = yaml.safe_load(path.read_text())
    data.pop("posterior", None)
    data["mcmc"] = {"num_samples": 300, "num_walkers": 8, "max_steps": 500}
    path.write_text(yaml.safe_dump(data))
    with pytest.warns(DeprecationWarning, match="mcmc: section is deprecated"), \
            caplog.at_level(logging.WARNING, logger="mfinfer"):
        cfg = load_config(path)
    assert "rename it posterior:" in caplog.text
    assert cfg.posterior == PosteriorSpec.from_options(method="emcee", num_samples=300, num_walkers=8,
                                                       max_steps=500)
    assert cfg.mcmc is cfg.posterior
    with pytest.warns(DeprecationWarning):  # --method on an old file: its emcee options go
        cfg = _config(build_parser().parse_args(["infer", str(path), "--method", "grid"]))
    assert cfg.posterior == PosteriorSpec.from_options(method="grid", num_samples=300)
    data["mcmc"] = {"method": "grid", "max_steps": 500}  # silently ignored before: now an error
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"mcmc\.max_steps: an option of method 'emcee', but method is"):
        load_config(path)


def test_cli_method_and_num_samples(tmp_path):
    path = write_config(tmp_path)
    args = build_parser().parse_args(["infer", str(path), "--method", "grid", "--num-samples", "300"])
    cfg = _config(args)
    assert cfg.posterior.method == "grid" and cfg.posterior.num_samples == 300
    assert cfg.posterior.emcee is None  # the file's emcee options go with its method
    with pytest.raises(SystemExit):
        build_parser().parse_args(["infer", str(path), "--method", "hmc"])


def test_calibration_sampler_options_are_checked_by_the_spec():
    cal = CalibrationConfig(n_observations=2, num_samples=100, sampler={"max_moves": 50})
    assert cal.method == "auto" and cal.spec.smc == SMCOptions(max_moves=50)
    with pytest.raises(ConfigError, match=r"calibration\.sampler\.max_steps: an option of method 'emcee', "
                                          "but method is 'grid'"):
        CalibrationConfig(n_observations=2, num_samples=100, method="grid", sampler={"max_steps": 5})
