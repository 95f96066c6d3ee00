"""ROOT I/O: exact round trip, user files with lepton collections, and every error case."""

from __future__ import annotations

import json

import numpy as np
import pytest

uproot = pytest.importorskip("uproot")
ak = pytest.importorskip("awkward")

# Kept after the importorskip calls, so that without uproot/awkward the module is skipped before
# anything else is imported.
from mfinfer.io import (  # noqa: E402
    CorruptFileError,
    InputError,
    MissingKeyError,
    read_events,
    read_user_events,
    write_events,
)
from simulators.higgs4l import LeptonSelection  # noqa: E402
from simulators.higgs4l.kinematics import OBSERVABLE_NAMES, momenta_from_chart, observables  # noqa: E402


@pytest.fixture
def sample(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 4)) * np.array([1.0, 1e-12, 1e12, 3.0])
    theta = rng.uniform(-1, 1, size=(1000, 2))
    path = tmp_path / "sample.root"
    meta = {"seed": 1234, "simulator": "higgs4l", "options": {"smear": 0.01, "cuts": [1, 2]}}
    write_events(path, x, theta, names=["a", "b", "c", "d"], metadata=meta)
    return path, x, theta, meta


def test_round_trip_exact(sample):
    path, x, theta, meta = sample
    x2, theta2, meta2 = read_events(path)
    assert x2.dtype == np.float64 and np.array_equal(x2, x)
    assert np.array_equal(theta2, theta)
    assert meta2 == meta
    x3, _, _ = read_events(path, branches=["d", "a"])
    assert np.array_equal(x3, x[:, [3, 0]])
    # it is a real TTree (not an RNTuple) with the expected branches
    with uproot.open(path) as f:
        assert f.classnames()["events;1"] == "TTree"
        assert f["events"].keys() == ["a", "b", "c", "d", "theta_0", "theta_1"]


def test_round_trip_defaults_and_atomic(tmp_path):
    path = tmp_path / "sub" / "x.root"
    x = np.arange(12.0).reshape(4, 3)
    write_events(path, x, tree="sim")
    x2, theta2, meta = read_events(path, tree="sim")
    assert np.array_equal(x2, x) and theta2 is None and meta == {}
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.root"]  # no temporary left behind
    with uproot.open(path) as f:
        assert f["sim"].keys() == ["x0", "x1", "x2"]


def test_write_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="expected 3 names"):
        write_events(tmp_path / "a.root", np.zeros((3, 3)), names=["a", "b"])
    with pytest.raises(ValueError, match=r"theta: expected shape \(3, p\)"):
        write_events(tmp_path / "a.root", np.zeros((3, 3)), theta=np.zeros((2, 1)))
    with pytest.raises(ValueError, match="unique"):
        write_events(
            tmp_path / "a.root", np.zeros((3, 2)), np.zeros((3, 1)), names=["a", "theta_0"]
        )


def _lepton_file(path, rng, n=200):
    """Events with e-, e+, mu-, mu+ in shuffled order, plus some with wrong multiplicities."""
    m1 = rng.uniform(70, 95, n)
    m2 = rng.uniform(15, 28, n)
    ps = momenta_from_chart(
        m1,
        m2,
        rng.uniform(-1, 1, n),
        rng.uniform(-np.pi, np.pi, n),
        rng.uniform(-1, 1, n),
        rng.uniform(-1, 1, n),
        rng.uniform(-np.pi, np.pi, n),
        psi=rng.uniform(-np.pi, np.pi, n),
        pt=rng.exponential(15, n),
        y=rng.normal(0, 1, n),
        phi=rng.uniform(-np.pi, np.pi, n),
    )
    colls = {}
    kind = np.arange(n) % 4  # 0, 1: good; 2: an extra soft e- ; 3: muons missing
    for name, (pneg, ppos) in (("Electron", ps[:2]), ("Muon", ps[2:])):
        pt, eta, phi, q, p4 = [], [], [], [], []
        for i in range(n):
            leps = [(pneg[i], -1), (ppos[i], +1)]
            if name == "Electron" and kind[i] == 2:
                leps.append((np.array([0.5, 0.3, 0.0, 0.4]), -1))  # pt 0.3 GeV, soft
            if name == "Muon" and kind[i] == 3:
                leps = leps[:1]
            order = rng.permutation(len(leps))
            leps = [leps[j] for j in order]
            pt.append([np.hypot(p[1], p[2]) for p, _ in leps])
            eta.append([np.arcsinh(p[3] / np.hypot(p[1], p[2])) for p, _ in leps])
            phi.append([np.arctan2(p[2], p[1]) for p, _ in leps])
            q.append([c for _, c in leps])
            p4.append([p for p, _ in leps])
        colls[name] = ak.zip(
            {
                "pt": ak.Array(pt),
                "eta": ak.Array(eta),
                "phi": ak.Array(phi),
                "charge": ak.values_astype(ak.Array(q), np.int32),
                **{
                    c: ak.Array([[p[j] for p in ev] for ev in p4])
                    for j, c in enumerate(["E", "px", "py", "pz"])
                },
            }
        )
    with uproot.recreate(path) as f:
        f.mktree(
            "Events",
            {"Electron": colls["Electron"].type, "Muon": colls["Muon"].type, "weight": np.float64},
        )
        f["Events"].extend(
            {
                "Electron": colls["Electron"],
                "Muon": colls["Muon"],
                "weight": np.arange(n, dtype=np.float64),
            }
        )
    return np.column_stack(ps).reshape(n, 4, 4), kind


def test_user_file_lepton_selection(tmp_path):
    path = tmp_path / "user.root"
    ps, kind = _lepton_file(path, np.random.default_rng(1))
    expected = observables(*(ps[:, i] for i in range(4)))

    x, names = read_user_events(path, "Events", selection=LeptonSelection())
    assert names == list(OBSERVABLE_NAMES)
    keep = kind < 2
    assert x.shape == (keep.sum(), len(OBSERVABLE_NAMES))
    np.testing.assert_allclose(x, expected[keep], rtol=1e-9, atol=1e-9)

    # "at least" takes the leading e- (the soft extra one is dropped); min_pt removes it too
    x2, _ = read_user_events(path, "Events", selection=LeptonSelection(require="at_least"))
    np.testing.assert_allclose(x2, expected[kind < 3], rtol=1e-9, atol=1e-9)
    x3, _ = read_user_events(path, "Events", selection=LeptonSelection(min_pt=(1.0, 0.0)))
    hard = np.hypot(ps[:, :2, 1], ps[:, :2, 2]).min(axis=1) >= 1.0
    np.testing.assert_allclose(x3, expected[(kind < 3) & hard], rtol=1e-9, atol=1e-9)
    x4, _ = read_user_events(path, "Events", selection=LeptonSelection(momentum="cartesian"))
    np.testing.assert_allclose(x4, expected[keep], rtol=1e-9, atol=1e-9)


def test_user_file_flat_branches_and_aliases(tmp_path):
    path = tmp_path / "user.root"
    _lepton_file(path, np.random.default_rng(2), n=20)
    x, names = read_user_events(
        path, "Events", {"w": "weight", "w2": "2 * weight", "n": "nElectron"}
    )
    assert names == ["w", "w2", "n"]
    np.testing.assert_array_equal(x[:, 0], np.arange(20.0))
    np.testing.assert_array_equal(x[:, 1], 2 * np.arange(20.0))
    # an expression that reduces a collection is flat, too
    x, _ = read_user_events(path, "Events", {"pt0": "Electron_pt[:, 0]"})
    assert x.shape == (20, 1)


def test_jagged_without_selection_is_an_error(tmp_path):
    path = tmp_path / "user.root"
    _lepton_file(path, np.random.default_rng(3), n=8)
    with pytest.raises(ValueError, match=r"Electron_pt.*jagged.*LeptonSelection"):
        read_user_events(path, "Events", ["weight", "Electron_pt"])


def test_missing_file(tmp_path):
    path = tmp_path / "nope.root"
    with pytest.raises(FileNotFoundError, match=r"nope.root"):
        read_events(path)
    with pytest.raises(FileNotFoundError, match=r"nope.root"):
        read_user_events(path, "Events", ["x"])


def test_missing_tree(sample):
    path = sample[0]
    with pytest.raises(MissingKeyError, match=r"no tree 'evnts'.*available.*'events'") as err:
        read_events(path, tree="evnts")
    assert isinstance(err.value, KeyError) and str(path) in str(err.value)


def test_missing_branch(sample, tmp_path):
    path = sample[0]
    with pytest.raises(
        MissingKeyError, match=r"no observable 'dd'.*available \(nearest first\): 'd'"
    ):
        read_events(path, branches=["dd"])
    with pytest.raises(MissingKeyError, match=r"no branch 'theta0'.*'theta_0'"):
        read_user_events(path, "events", ["a", "theta0"])
    with pytest.raises(MissingKeyError, match=r"no branch 'cc'.*'c'"):
        read_user_events(path, "events", {"y": "cc * 2"})
    user = tmp_path / "user.root"
    _lepton_file(user, np.random.default_rng(4), n=8)
    with pytest.raises(MissingKeyError, match=r"no branch 'Elec_pt'.*'Electron_pt'"):
        read_user_events(user, "Events", {"Electron_pt": "Elec_pt"}, selection=LeptonSelection())


def test_truncated_file(sample, tmp_path):
    data = sample[0].read_bytes()
    for cut in (len(data) // 2, len(data) - 100, 200):
        bad = tmp_path / f"cut{cut}.root"
        bad.write_bytes(data[:cut])
        with pytest.raises(CorruptFileError, match=rf"{bad.name}: truncated") as err:
            read_events(bad)
        assert isinstance(err.value, OSError)


def test_corrupt_file(sample, tmp_path):
    rng = np.random.default_rng(5)
    garbage = tmp_path / "garbage.root"
    garbage.write_bytes(rng.bytes(5000))
    with pytest.raises(CorruptFileError, match=r"garbage.root: truncated or corrupt"):
        read_events(garbage)
    data = bytearray(sample[0].read_bytes())
    data[300:] = rng.bytes(len(data) - 300)  # header intact, everything after scrambled
    scrambled = tmp_path / "scrambled.root"
    scrambled.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=r"scrambled.root"):
        read_events(scrambled)


def test_not_an_mfinfer_file(tmp_path):
    path = tmp_path / "user.root"
    _lepton_file(path, np.random.default_rng(6), n=4)
    with pytest.raises(ValueError, match="read_user_events"):
        read_events(path, tree="Events")


def test_expressions_are_evaluated_without_uproot_eval(tmp_path, monkeypatch):
    path = tmp_path / "user.root"
    _, kind = _lepton_file(path, np.random.default_rng(7), n=20)

    def no_eval(*args, **kwargs):
        raise AssertionError("an expression reached uproot's expression evaluation")

    monkeypatch.setattr(uproot.language.python.PythonLanguage, "compute_expressions", no_eval)
    w = np.arange(20.0)
    x, names = read_user_events(
        path,
        "Events",
        {
            "weight": "weight * 2",  # a column may shadow a branch (uproot's aliases return the branch)
            "m": "maximum(weight, 5) - minimum(weight, 5)",
            "s": "where((weight > 3) & ~(weight > 10), sqrt(weight), -1)",
            "n": "nElectron ** 2 // 3 % 7",
            "last": "Electron_pt[:, -1]",
            "hard": "Electron_pt[Electron_pt > 1][:, 0]",
        },
    )
    assert names == ["weight", "m", "s", "n", "last", "hard"]
    np.testing.assert_array_equal(x[:, 0], 2 * w)
    np.testing.assert_array_equal(x[:, 1], np.abs(w - 5))
    np.testing.assert_array_equal(x[:, 2], np.where((w > 3) & ~(w > 10), np.sqrt(w), -1))
    n_el = np.where(kind == 2, 3, 2)
    np.testing.assert_array_equal(x[:, 3], n_el**2 // 3 % 7)
    with uproot.open(path) as f:
        pt = f["Events"]["Electron_pt"].array()
    np.testing.assert_array_equal(x[:, 4], ak.to_numpy(pt[:, -1]))
    np.testing.assert_array_equal(x[:, 5], ak.to_numpy(pt[pt > 1][:, 0]))
    # overrides of a selection's inputs go through the same checker and evaluator
    x1, _ = read_user_events(path, "Events", selection=LeptonSelection())
    x2, _ = read_user_events(
        path, "Events", {"Electron_pt": "abs(Electron_pt) * 1.0"}, selection=LeptonSelection()
    )
    np.testing.assert_array_equal(x1, x2)
    # and read_events reads branch by branch
    sample = write_events(tmp_path / "s.root", np.ones((3, 2)), names=["a", "b"])
    assert read_events(sample)[0].shape == (3, 2)


def test_branch_names_that_are_not_identifiers(tmp_path):
    path = tmp_path / "dots.root"
    with uproot.recreate(path) as f:
        f.mktree("T", {"x.y": np.float64, "a/b": np.float64})
        f["T"].extend({"x.y": np.arange(3.0), "a/b": np.ones(3)})
    x, _ = read_user_events(path, "T", ["x.y", "a/b"])  # read whole, as they are
    np.testing.assert_array_equal(x, np.column_stack([np.arange(3.0), np.ones(3)]))
    with pytest.raises(InputError, match=r"column 'z' = 'x.y \* 2': attribute access \(\.y\)"):
        read_user_events(path, "T", {"z": "x.y * 2"})


def test_crafted_metadata_never_reaches_eval(tmp_path):
    """Names in a file's metadata are looked up as branches, never evaluated."""
    path = tmp_path / "crafted.root"
    flag = tmp_path / "pwned"
    info = {
        "format": "mfinfer-events/1",
        "observables": [f"a[0].__class__.__init__.__globals__['os'].system('touch {flag}')"],
        "parameters": [],
        "n_events": 2,
        "metadata": {},
    }
    with uproot.recreate(path) as f:
        f.mktree("events", {"a": np.float64})
        f["events"].extend({"a": np.zeros(2)})
        f["metadata"] = json.dumps(info)
    with pytest.raises(CorruptFileError, match=r"lists branches .* that tree 'events' lacks"):
        read_events(path)
    assert not flag.exists()
    info["observables"] = 7
    with uproot.recreate(path) as f:
        f.mktree("events", {"a": np.float64})
        f["metadata"] = json.dumps(info)
    with pytest.raises(InputError, match="not mfinfer event metadata"):
        read_events(path)
