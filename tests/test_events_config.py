"""The config's ``events:`` section: presets, overrides, lepton files in the NanoAOD and CMS-tutorial
schemas (written here with uproot's ``mktree``), the documented rejections, observables against an
independent numpy computation, weights, clear errors, and ``mfinfer infer`` on each schema."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

uproot = pytest.importorskip("uproot")
ak = pytest.importorskip("awkward")

from mfinfer.cli import main  # noqa: E402
from mfinfer.config import ConfigError, RunConfig  # noqa: E402
from mfinfer.errors import InputError, MissingKeyError  # noqa: E402
from mfinfer.io import PRESETS, EventsConfig, read_lepton_events  # noqa: E402
from mfinfer.registry import get_simulator  # noqa: E402
from simulators.higgs4l.kinematics import OBSERVABLE_NAMES, momenta_from_observables  # noqa: E402

HIGGS_TINY = Path(__file__).parent / "configs" / "higgs4l_tiny.yaml"
MASS = {"e": 0.000511, "m": 0.10566}  # GeV
COL = {name: i for i, name in enumerate(OBSERVABLE_NAMES)}
#: Event topologies of the test files, and whether the default selection keeps them.
KINDS = {0: "2e2mu", 1: "3 leptons", 2: "5 leptons (an extra hard e-)", 3: "6 leptons (2e4mu)",
         4: "same-sign electrons", 5: "4e", 6: "empty", 7: "2e2mu + a soft e- (2 GeV)",
         8: "2e2mu at m_4l = 230 GeV (momenta scaled)"}
KEPT = (0, 8)


# ------------------------------------------------------------------ test files
def _events(n: int, seed: int, kinds: tuple[int, ...]) -> tuple[list[list[tuple]], np.ndarray]:
    """n events cycling through ``kinds``: per event a list of (flavour, charge, (E, px, py, pz))."""
    rng = np.random.default_rng(seed)
    x = get_simulator("higgs4l").sample([[0.5, -1.0]] * n, rng)
    ps = np.stack(momenta_from_observables(x), axis=1)  # (n, 4, 4): e-, e+, mu-, mu+
    kind = np.array([kinds[i % len(kinds)] for i in range(n)])
    hard = np.array([40.0, 20.0, 25.0, 15.0])  # E, px, py, pz of an extra hard lepton
    out = []
    for p, k in zip(ps, kind, strict=True):
        if k == 8:
            p = p * (230.0 / 125.0)
        leps = [("e", -1, p[0]), ("e", 1, p[1]), ("m", -1, p[2]), ("m", 1, p[3])]
        if k == 1:
            leps = leps[:3]
        elif k == 2:
            leps.append(("e", -1, hard))
        elif k == 3:
            leps += [("m", -1, hard), ("m", 1, hard * [1, -1, 1, 1])]
        elif k == 4:
            leps[1] = ("e", -1, p[1])
        elif k == 5:
            leps = [("e", c, q) for _, c, q in leps]
        elif k == 6:
            leps = []
        elif k == 7:
            leps.append(("e", -1, np.array([2.5, 2.0, 0.0, 1.5])))
        out.append([leps[j] for j in rng.permutation(len(leps))])
    return out, kind


def write_leptons(path: Path, events: list[list[tuple]], schema: str, weights: np.ndarray) -> Path:
    """A ROOT file of ``events`` in the ``nanoaod`` (tree Events: Electron_pt/eta/phi/mass/charge,
    float32, genWeight) or ``cms-tutorial`` schema (tree events: Electron_Px/Py/Pz/E/Charge,
    EventWeight)."""
    colls = {}
    for flav, prefix in (("e", "Electron"), ("m", "Muon")):
        rows = [[(c, q) for f, c, q in ev if f == flav] for ev in events]
        charge = ak.values_astype(ak.Array([[c for c, _ in r] for r in rows]), np.int32)
        p = [np.array([q for _, q in r], dtype=np.float64).reshape(-1, 4) for r in rows]
        if schema == "nanoaod":
            pt = [np.hypot(a[:, 1], a[:, 2]) for a in p]
            fields = {"pt": pt, "eta": [np.arcsinh(a[:, 3] / t) for a, t in zip(p, pt, strict=True)],
                      "phi": [np.arctan2(a[:, 2], a[:, 1]) for a in p],
                      "mass": [np.full(len(a), MASS[flav]) for a in p]}
            rec = {k: ak.values_astype(ak.Array([list(v) for v in vals]), np.float32)
                   for k, vals in fields.items()} | {"charge": charge}
        else:
            rec = {k: ak.values_astype(ak.Array([list(a[:, j]) for a in p]), np.float32)
                   for j, k in enumerate(("E", "Px", "Py", "Pz"))} | {"Charge": charge}
        colls[prefix] = ak.zip(rec)
    tree, wname = ("Events", "genWeight") if schema == "nanoaod" else ("events", "EventWeight")
    with uproot.recreate(path) as f:
        f.mktree(tree, {"Electron": colls["Electron"].type, "Muon": colls["Muon"].type,
                        wname: np.float64})
        f[tree].extend({"Electron": colls["Electron"], "Muon": colls["Muon"], wname: weights})
    return path


def _four_vectors(path: Path, schema: str) -> dict[str, list[np.ndarray]]:
    """Independent of mfinfer: each event's (E, px, py, pz) per flavour and charge, from the file."""
    with uproot.open(path) as f:
        t = f["Events" if schema == "nanoaod" else "events"]
        out = {}
        for prefix in ("Electron", "Muon"):
            a = {k.split("_", 1)[1]: t[k].array(library="np") for k in t.keys()
                 if k.startswith(prefix + "_")}
            if schema == "nanoaod":
                vec = []
                for i in range(len(a["pt"])):
                    p, e, h, mm = (np.asarray(a[k][i], dtype=np.float64)
                                   for k in ("pt", "eta", "phi", "mass"))
                    vec.append(np.stack([np.sqrt((p * np.cosh(e)) ** 2 + mm**2), p * np.cos(h),
                                         p * np.sin(h), p * np.sinh(e)], axis=-1).reshape(-1, 4))
                q = a["charge"]
            else:
                vec = [np.stack([np.asarray(a[k][i], dtype=np.float64) for k in ("E", "Px", "Py", "Pz")],
                                axis=-1).reshape(-1, 4) for i in range(len(a["E"]))]
                q = a["Charge"]
            out[prefix] = [(v, np.asarray(c)) for v, c in zip(vec, q, strict=True)]
    return out


def _m4l(vectors: dict, i: int) -> float:
    total = sum(v[i][0].sum(axis=0) for v in vectors.values())
    return float(np.sqrt(total[0] ** 2 - (total[1:] ** 2).sum()))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, tuple[Path, np.ndarray, np.ndarray]]:
    """{schema: (file, kind per entry, weights)}: 36 entries, 4 of each topology in KINDS."""
    tmp = tmp_path_factory.mktemp("leptons")
    out = {}
    for seed, schema in enumerate(("nanoaod", "cms-tutorial")):
        events, kind = _events(36, seed, tuple(KINDS))
        weights = np.linspace(0.5, 1.5, len(events)) * np.where(np.arange(len(events)) % 5 == 0, -1, 1)
        out[schema] = (write_leptons(tmp / f"{schema}.root", events, schema, weights), kind, weights)
    return out


# ------------------------------------------------------------------ the config section
def test_presets_and_overrides():
    nano = EventsConfig.from_dict({"preset": "nanoaod"})
    assert (nano.tree, nano.momentum, nano.charge, nano.weight) == ("Events", "ptetaphim", "charge", None)
    assert "Electron_mass" in nano.canonical_inputs() and nano.branches == {}
    cms = EventsConfig.from_dict({"preset": "cms-tutorial"})
    assert (cms.tree, cms.momentum, cms.charge) == ("events", "cartesian", "Charge")
    assert cms.weight == "EventWeight"
    assert cms.expressions()["Muon_px"] == "Muon_Px" and cms.expressions()["Muon_E"] == "Muon_E"
    # other keys override the preset; branches and cuts merge key by key
    over = EventsConfig.from_dict({"preset": "cms-tutorial", "tree": "T", "weight": None,
                                   "branches": {"Muon_E": "sqrt(Muon_E**2)"},
                                   "cuts": {"pt_mu": 5, "m_4l": [105, 140]}})
    assert (over.tree, over.weight, over.branches["Muon_px"], over.branches["Muon_E"]) == \
        ("T", None, "Muon_Px", "sqrt(Muon_E**2)")
    assert over.cuts["pt_mu"] == 5 and over.cuts["pt_e"] == 0 and over.cuts["m_4l"] == [105, 140]
    opts = over.selection_options()
    assert opts["min_pt"] == (0.0, 5.0) and opts["m_4l"] == (105.0, 140.0) and opts["momentum"] == "cartesian"
    # a preset's branch map follows its momentum convention: dropped when the convention changes
    assert EventsConfig.from_dict({"preset": "cms-tutorial", "momentum": "ptetaphim"}).branches == {}
    assert set(PRESETS) == {"nanoaod", "cms-tutorial"}


def _run_config(**events) -> dict:
    cfg = yaml.safe_load(HIGGS_TINY.read_text())
    cfg["events"] = events
    return cfg


@pytest.mark.parametrize(("events", "message"), [
    ({"preset": "nanoad"}, "events.preset: must be one of ['nanoaod', 'cms-tutorial'], got 'nanoad' "
                           "(did you mean 'nanoaod'?)"),
    ({"momentum": "ptetaphim2"}, "events.momentum: must be one of"),
    ({"tre": "Events"}, "events.tre: unknown field; allowed: ['tree'"),
    ({"cuts": {"pt": 5}}, "events.cuts.pt: unknown field"),
    ({"cuts": {"m_Z1": [120, 40]}}, "events.cuts.m_Z1: expected a window [low, high]"),
    ({"cuts": {"pt_e": -1}}, "events.cuts.pt_e: expected a number >= 0"),
    ({"branches": {"Electron_pt": "el.pt"}}, "events.branches.Electron_pt"),
    ({"branches": {"Electron_px": "el_px"}}, "events.branches.Electron_px: not an input of the selection"),
    ({"gate": {"quantile": 1.5}}, "events.gate.quantile: expected a number in (0, 1)"),
    ({"gate": {"n_reference": 10}}, "events.gate.n_reference: at quantile 0.99"),
    ({"weight": "__import__('os')"}, "calling '__import__' is not allowed"),
])
def test_bad_events_section_is_a_config_error(events, message):
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict(_run_config(**events))
    assert message in str(err.value)


def test_events_section_needs_a_simulator_selection():
    cfg = yaml.safe_load((Path(__file__).parent / "configs" / "tiny.yaml").read_text())
    cfg["events"] = {"preset": "nanoaod"}
    with pytest.raises(ConfigError, match=r"events: simulator 'power' defines no event_selection\(\)"):
        RunConfig.from_dict(cfg)


# ------------------------------------------------------------------ reading the files
@pytest.mark.parametrize("schema", ["nanoaod", "cms-tutorial"])
def test_selection_rejects_as_documented_and_matches_numpy(files, schema, caplog):
    path, kind, weights = files[schema]
    sim = get_simulator("higgs4l")
    events = {"preset": schema, "weight": "genWeight" if schema == "nanoaod" else "EventWeight"}
    with caplog.at_level(logging.INFO, logger="mfinfer.io"):
        sel = read_lepton_events(path, sim, events)
    keep = np.isin(kind, KEPT)
    assert f"selected {keep.sum()} of {len(kind)} events from {path}" in caplog.text
    np.testing.assert_array_equal(sel.entries, np.flatnonzero(keep))
    np.testing.assert_array_equal(sel.weights, weights[keep])  # negative weights come back as they are
    assert sel.x.shape == (keep.sum(), len(OBSERVABLE_NAMES)) and sel.names == list(OBSERVABLE_NAMES)
    vectors = _four_vectors(path, schema)
    m4l = [_m4l(vectors, i) for i in sel.entries]
    np.testing.assert_allclose(sel.x[:, COL["m_4l"]], m4l, rtol=1e-9)
    np.testing.assert_allclose(sel.x[:, COL["m_4l"]], np.where(kind[keep] == 8, 230.0, 125.0), rtol=1e-3)
    for i, entry in enumerate(sel.entries):  # e- and mu+ four-vectors, picked by charge
        (e, qe), (m, qm) = vectors["Electron"][entry], vectors["Muon"][entry]
        np.testing.assert_allclose(sel.x[i, :4], e[qe < 0][0], rtol=1e-9)
        np.testing.assert_allclose(sel.x[i, 12:16], m[qm > 0][0], rtol=1e-9)
    # with cuts: the same as an independent implementation of the documented rule (leptons below
    # threshold dropped first, then exactly one e-, e+, mu-, mu+, then the m_4l window)
    cut = read_lepton_events(path, sim, {**events, "cuts": {"pt_e": 5.0, "pt_mu": 3.0, "m_4l": [100, 150]}})
    np.testing.assert_array_equal(cut.entries, _expected_entries(vectors, (5.0, 3.0), (100, 150)))
    assert 0 < len(cut.entries) < keep.sum() + 4


def _expected_entries(vectors: dict, min_pt: tuple[float, float], window: tuple[float, float]) -> np.ndarray:
    keep = []
    for i in range(len(vectors["Electron"])):
        picked = []
        for (p, q), thr in zip((vectors["Electron"][i], vectors["Muon"][i]), min_pt, strict=True):
            good = np.hypot(p[:, 1], p[:, 2]) >= thr
            if good.sum() == 2 and (q[good] < 0).sum() == 1 and (q[good] > 0).sum() == 1:
                picked.append(p[good].sum(axis=0))
        if len(picked) == 2:
            total = picked[0] + picked[1]
            m4l = np.sqrt(total[0] ** 2 - (total[1:] ** 2).sum())
            keep.append(window[0] < m4l < window[1])
        else:
            keep.append(False)
    return np.flatnonzero(keep)


def test_empty_selection_names_the_file_and_the_cuts(files):
    path = files["nanoaod"][0]
    with pytest.raises(InputError) as err:
        read_lepton_events(path, get_simulator("higgs4l"), {"cuts": {"m_4l": [300, 400], "pt_mu": 5}})
    text = str(err.value)
    assert str(path) in text and "no events selected" in text and "300 < m_4l < 400 GeV" in text
    assert "pT(mu) >= 5 GeV" in text and "from the 36 entries of tree 'Events'" in text


def test_preset_that_does_not_match_the_file_names_branches_and_the_other_preset(files):
    sim = get_simulator("higgs4l")
    with pytest.raises(MissingKeyError) as err:
        read_lepton_events(files["cms-tutorial"][0], sim, {"preset": "nanoaod"})
    text = str(err.value)
    assert "does not match preset 'nanoaod': no tree 'Events'" in text and "'Electron_pt'" in text
    assert "matches preset 'cms-tutorial': use events: {preset: cms-tutorial}" in text
    with pytest.raises(MissingKeyError) as err:  # same tree name: the branches differ
        read_lepton_events(files["cms-tutorial"][0], sim, {"preset": "nanoaod", "tree": "events"})
    assert "tree 'events' lacks the branches 'Electron_pt', 'Electron_eta'" in str(err.value)
    assert "use events: {preset: cms-tutorial}" in str(err.value)
    with pytest.raises(MissingKeyError, match=r"lacks the branches 'mu_px' \(for Muon_px = 'mu_px'\)"):
        read_lepton_events(files["cms-tutorial"][0], sim,
                           {"preset": "cms-tutorial", "branches": {"Muon_px": "mu_px"}})
    with pytest.raises(MissingKeyError, match=r"'genWeight' \(for weight = 'genWeight'\)"):
        read_lepton_events(files["cms-tutorial"][0], sim, {"preset": "cms-tutorial", "weight": "genWeight"})


def test_branch_map_with_an_expression(files):
    path = files["cms-tutorial"][0]
    sim = get_simulator("higgs4l")
    plain = read_lepton_events(path, sim, {"preset": "cms-tutorial"})
    scaled = read_lepton_events(path, sim, {"preset": "cms-tutorial", "branches": {
        f"{c}_{f}": f"2 * {c}_{f.capitalize() if f != 'E' else f}"
        for c in ("Electron", "Muon") for f in ("E", "px", "py", "pz")}})
    np.testing.assert_allclose(scaled.x[:, COL["m_4l"]], 2 * plain.x[:, COL["m_4l"]], rtol=1e-12)


def test_real_cms_tutorial_file_if_installed():
    """The CMS HEP-tutorial HZZ.root shipped by scikit-hep-testdata (a dev dependency)."""
    testdata = pytest.importorskip("skhep_testdata")
    try:
        path = testdata.data_path("uproot-HZZ.root")
    except Exception:  # not in the local package: it would need a download
        pytest.skip("uproot-HZZ.root is not available locally")
    sel = read_lepton_events(path, get_simulator("higgs4l"), {"preset": "cms-tutorial"})
    assert sel.n_entries == 2421 and len(sel.x) > 0 and sel.weights is not None
    assert np.all(sel.x[:, COL["m_4l"]] > 0)


# ------------------------------------------------------------------ mfinfer infer on each schema
def _main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _config(tmp: Path, name: str, events: dict) -> Path:
    cfg = yaml.safe_load(HIGGS_TINY.read_text())
    cfg.update(name="events-cli", output_dir=str(tmp / "runs"),  # a short chain: the posterior is not tested
               posterior={"method": "emcee", "num_samples": 64,
                          "emcee": {"num_walkers": 4, "max_steps": 40}},
               events={**events, "gate": {"n_reference": 300, "n_theta": 4}})
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, files) -> Path:
    tmp = tmp_path_factory.mktemp("events-cli")
    nano = _config(tmp, "nano.yaml", {"preset": "nanoaod", "weight": "genWeight"})
    _config(tmp, "cms.yaml", {"preset": "cms-tutorial"})  # the same run directory and models
    code, _, err = _main(["train", str(nano), "--quiet"])
    assert code == 0, err
    return tmp


def _posterior_json(tmp: Path, tag: str, model: str) -> dict:
    return json.loads((tmp / "runs" / "events-cli" / "seed_0" / "posteriors" / f"point_{tag}" /
                       f"{model}.json").read_text())


@pytest.mark.filterwarnings("ignore:sample_emcee:UserWarning")
def test_infer_cli_on_each_schema(trained, files):
    nano_file, nano_kind, _ = files["nanoaod"]
    code, out, err = _main(["infer", str(trained / "nano.yaml"), "--events", str(nano_file), "--quiet"])
    assert code == 0, err
    assert f"selected {np.isin(nano_kind, KEPT).sum()} of 36 events from {nano_file}" in out
    assert "weights (genWeight): read, not used" in out
    assert "AF: mean" in out and "M-flow: mean" in out and "AF: gate:" in out
    gate = _posterior_json(trained, "nanoaod", "AF")["metadata"]["gate"]
    assert gate["n_events"] == np.isin(nano_kind, KEPT).sum() and gate["dropped_indices"] == []
    assert {"threshold", "quantile", "flagged_fraction", "expected_rate", "p_value"} <= set(gate)
    assert gate["quantile"] == 0.99 and 0.005 < gate["expected_rate"] <= 0.01
    # the AF flags the 230 GeV events, a significant excess: a loud warning on stderr
    kept_kind = nano_kind[np.isin(nano_kind, KEPT)]
    assert set(np.flatnonzero(kept_kind == 8)) <= set(gate["flagged_indices"])
    assert gate["excess"] and "WARNING: AF:" in err and "--on-manifold-only" in err

    cms_file, cms_kind, _ = files["cms-tutorial"]
    code, out, err = _main(["infer", str(trained / "cms.yaml"), "--events", str(cms_file), "--quiet"])
    assert code == 0, err
    assert f"selected {np.isin(cms_kind, KEPT).sum()} of 36 events from {cms_file}" in out
    assert _posterior_json(trained, "cms-tutorial", "AF")["metadata"]["gate"]["n_events"] == 8


@pytest.mark.filterwarnings("ignore:sample_emcee:UserWarning")
def test_strict_refuses_and_on_manifold_only_drops(trained, files):
    nano_file, nano_kind, _ = files["nanoaod"]
    cfg = str(trained / "nano.yaml")
    code, _, err = _main(["infer", cfg, "--events", str(nano_file), "--quiet", "--strict"])
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "--strict: refusing to sample" in err and "flagged off-manifold" in err
    code, _, err = _main(["infer", cfg, "--events", str(nano_file), "--quiet", "--on-manifold-only"])
    assert code == 0, err
    gate = _posterior_json(trained, "nanoaod", "AF")["metadata"]["gate"]
    kept_kind = nano_kind[np.isin(nano_kind, KEPT)]
    assert gate["action"] == "drop" and gate["dropped_indices"] == gate["flagged_indices"]
    assert set(np.flatnonzero(kept_kind == 8)) <= set(gate["dropped_indices"])
    post = _posterior_json(trained, "nanoaod", "AF")
    assert post["metadata"]["n_events"] == gate["n_events"] - len(gate["dropped_indices"])
    assert "the flagged events were dropped" in err
