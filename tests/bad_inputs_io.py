"""Bad inputs to the ROOT I/O API (mfinfer.io): each case makes one bad call and names the error.

``CASES`` holds ``(id, call, exc_type, keyword)``: ``call(tmp_path)`` makes whatever small file it
needs under ``tmp_path`` and performs the bad call; it must raise ``exc_type`` with ``keyword`` in the
(lower-cased) message. ``tests/test_bad_inputs.py`` collects these with other modules' cases;
``tests/test_io_root.py`` runs them too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from mfinfer.errors import ConfigError, CorruptFileError, InputError, MissingKeyError
from mfinfer.io import EventsConfig, read_events, read_lepton_events, read_user_events, write_events

__all__ = ["CASES", "lepton_file"]


def _user_file(tmp_path: Path) -> Path:
    """A tree ``Events`` with flat ``x``, ``y`` and an electron collection (``nElectron``,
    ``Electron_pt``, ``Electron_eta``) that is empty in the second of three events."""
    import awkward as ak
    import uproot

    path = tmp_path / "user.root"
    el = ak.zip({"pt": ak.Array([[30.0, 20.0], [], [15.0]]), "eta": ak.Array([[0.1, -0.2], [], [1.0]])})
    with uproot.recreate(path) as f:
        f.mktree("Events", {"Electron": el.type, "x": np.float64, "y": np.float64})
        f["Events"].extend({"Electron": el, "x": np.array([1.0, -2.0, 3.0]), "y": np.ones(3)})
    return path


def lepton_file(tmp: Path, schema: str = "nanoaod", weights: tuple[float, ...] = (1.0, 1.0)) -> Path:
    """Two 2e2mu events in the ``nanoaod`` (tree Events, Electron_pt/eta/phi/mass/charge, genWeight)
    or ``cms-tutorial`` schema (tree events, Electron_Px/Py/Pz/E/Charge, EventWeight)."""
    import awkward as ak
    import uproot

    p = np.array([[40.0, 10.0, 20.0, 30.0], [30.0, 5.0, -20.0, 10.0]])  # E, px, py, pz (not massless)
    colls = {}
    for prefix in ("Electron", "Muon"):
        p = p if prefix == "Electron" else p[:, [0, 2, 1, 3]] * [1, -1, 1, -1]
        pt, eta = np.hypot(p[:, 1], p[:, 2]), np.arcsinh(p[:, 3] / np.hypot(p[:, 1], p[:, 2]))
        fields = ({"pt": pt, "eta": eta, "phi": np.arctan2(p[:, 2], p[:, 1]), "mass": np.zeros(2)}
                  if schema == "nanoaod" else dict(zip(("E", "Px", "Py", "Pz"), p.T, strict=True)))
        charge = "charge" if schema == "nanoaod" else "Charge"
        colls[prefix] = ak.zip({k: ak.Array([list(v)] * len(weights)) for k, v in fields.items()}
                               | {charge: ak.Array([[-1, 1]] * len(weights))})
    tree, wname = ("Events", "genWeight") if schema == "nanoaod" else ("events", "EventWeight")
    path = tmp / f"{schema}.root"
    with uproot.recreate(path) as f:
        f.mktree(tree, {"Electron": colls["Electron"].type, "Muon": colls["Muon"].type, wname: np.float64})
        f[tree].extend({"Electron": colls["Electron"], "Muon": colls["Muon"], wname: np.array(weights)})
    return path


def _leptons(schema: str, events: dict, weights: tuple[float, ...] = (1.0, 1.0)) -> Callable[[Path], object]:
    """Read ``lepton_file(tmp, schema, weights)`` with the ``events`` settings."""
    def call(tmp: Path) -> object:
        from mfinfer.registry import get_simulator

        return read_lepton_events(lepton_file(tmp, schema, weights), get_simulator("higgs4l"), events)

    return call


def _sample(tmp_path: Path) -> Path:
    """A small file written by ``write_events`` (tree ``events``, observables ``a``, ``b``)."""
    x = np.arange(200.0).reshape(100, 2)
    return write_events(tmp_path / "sample.root", x, np.zeros((100, 1)), names=["a", "b"])


def _expr(expression: str) -> Callable[[Path], object]:
    """Read column ``c`` = ``expression`` from the user file."""
    return lambda tmp: read_user_events(_user_file(tmp), "Events", {"c": expression})


def _no_shell(tmp: Path) -> object:
    """The attribute chain that used to reach os.system; the command must not run."""
    flag = tmp / "pwned"
    try:
        return read_user_events(_user_file(tmp), "Events", {"c": f"__import__('os').system('touch {flag}')"})
    finally:
        if flag.exists():
            raise AssertionError("the expression ran a shell command")


def _garbage(tmp: Path) -> object:
    path = tmp / "garbage.root"
    path.write_bytes(bytes(range(256)) * 20)
    return read_events(path)


def _empty(tmp: Path) -> object:
    path = tmp / "empty.root"
    path.write_bytes(b"")
    return read_events(path)


def _truncated(tmp: Path) -> object:
    data = _sample(tmp).read_bytes()
    cut = tmp / "cut.root"
    cut.write_bytes(data[: len(data) // 2])
    return read_user_events(cut, "events", ["a"])


class _InputsOnly:
    """A selection without ``select``."""

    def inputs(self) -> list[str]:
        return ["Electron_pt"]


class _FlatInput:
    """A selection whose input is a flat branch, not a per-event collection."""

    def inputs(self) -> list[str]:
        return ["x"]

    def select(self, arrays):  # pragma: no cover - never reached
        raise AssertionError("select must not be called")


CASES: list[tuple[str, Callable[[Path], object], type[BaseException], str]] = [
    # expressions outside the grammar: rejected before anything is evaluated
    ("io-expr-import-os-system", _no_shell, InputError, "attribute access"),
    ("io-expr-dunder-class", _expr("x.__class__"), InputError, "attribute access (.__class__)"),
    ("io-expr-lambda", _expr("(lambda: x)()"), InputError, "lambda"),
    ("io-expr-comprehension", _expr("[v for v in x]"), InputError, "comprehension"),
    ("io-expr-open-call", _expr("open('f')"), InputError, "calling 'open'"),
    ("io-expr-keyword-arg", _expr("sqrt(x, out=y)"), InputError, "keyword arguments"),
    ("io-expr-string-constant", _expr("x * 'a'"), InputError, "string constant"),
    ("io-expr-wrong-arity", _expr("sqrt(x, y)"), InputError, "takes 1 argument"),
    ("io-expr-and-or", _expr("(x > 0) and (y > 0)"), InputError, "use & and |"),
    ("io-expr-chained-compare", _expr("0 < x < 1"), InputError, "chained comparisons"),
    ("io-expr-walrus", _expr("(z := x)"), InputError, "assignment"),
    ("io-expr-slice-bound", _expr("Electron_pt[:, :y]"), InputError, "slice bounds"),
    ("io-expr-too-deep", _expr("-" * 300 + "x"), InputError, "nests more than"),
    ("io-expr-syntax", _expr("x +"), InputError, "not a valid expression"),
    ("io-expr-no-branch", _expr("1 + 2"), InputError, "uses no branch"),
    # expressions in the grammar that fail on the data: expression errors, never "corrupt file"
    ("io-expr-unknown-branch", _expr("2 * nosuch"), MissingKeyError, "'2 * nosuch'"),
    ("io-expr-index-empty-list", _expr("Electron_pt[:, 0]"), InputError, "expression error"),
    ("io-expr-overflow", _expr("x * 9 ** 9 ** 9"), InputError, "expression error"),
    ("io-expr-drops-events", _expr("x[x > 0]"), InputError, "one entry per event"),
    # the branches argument itself
    ("io-branches-none", lambda tmp: read_user_events(_user_file(tmp), "Events"), InputError, "got none"),
    ("io-branches-int", lambda tmp: read_user_events(_user_file(tmp), "Events", 5), InputError, "got int"),
    (
        "io-branches-non-string",
        lambda tmp: read_user_events(_user_file(tmp), "Events", {"c": 3}),
        InputError,
        "expression string",
    ),
    (
        "io-jagged-without-selection",
        lambda tmp: read_user_events(_user_file(tmp), "Events", ["x", "Electron_pt"]),
        InputError,
        "jagged",
    ),
    # selections
    (
        "io-selection-without-select",
        lambda tmp: read_user_events(_user_file(tmp), "Events", selection=_InputsOnly()),
        TypeError,
        "select()",
    ),
    (
        "io-selection-flat-input",
        lambda tmp: read_user_events(_user_file(tmp), "Events", selection=_FlatInput()),
        InputError,
        "per-event collection",
    ),
    (
        "io-selection-unknown-override",
        lambda tmp: read_user_events(_user_file(tmp), "Events", {"Muon_pt": "x"}, selection=_FlatInput()),
        MissingKeyError,
        "no selection input 'muon_pt'",
    ),
    # damaged or missing files and objects
    ("io-missing-file", lambda tmp: read_events(tmp / "nope.root"), FileNotFoundError, "nope.root"),
    ("io-directory", lambda tmp: read_user_events(tmp, "Events", ["x"]), IsADirectoryError, "directory"),
    ("io-garbage-bytes", _garbage, CorruptFileError, "garbage.root: truncated or corrupt"),
    ("io-truncated", _truncated, CorruptFileError, "cut.root: truncated"),
    ("io-empty-file", _empty, CorruptFileError, "empty.root: truncated or corrupt"),
    (
        "io-missing-tree",
        lambda tmp: read_events(_sample(tmp), tree="evnts"),
        MissingKeyError,
        "no tree 'evnts'",
    ),
    (
        "io-missing-branch",
        lambda tmp: read_user_events(_user_file(tmp), "Events", ["x", "Elec_pt"]),
        MissingKeyError,
        "no branch 'elec_pt'",
    ),
    (
        "io-missing-observable",
        lambda tmp: read_events(_sample(tmp), branches=["aa"]),
        MissingKeyError,
        "no observable 'aa'",
    ),
    (
        "io-not-a-tree",
        lambda tmp: read_user_events(_sample(tmp), "metadata", ["a"]),
        InputError,
        "to be a ttree",
    ),
    (
        "io-not-an-mfinfer-file",
        lambda tmp: read_events(_user_file(tmp), tree="Events"),
        InputError,
        "read_user_events",
    ),
    # lepton files read with events: settings (mfinfer.io.events)
    ("io-events-preset-mismatch", _leptons("cms-tutorial", {"preset": "nanoaod"}), MissingKeyError,
     "tree 'events' lacks the branches 'electron_pt'"),
    ("io-events-preset-suggests-other", _leptons("nanoaod", {"preset": "cms-tutorial"}), MissingKeyError,
     "the file matches preset 'nanoaod': use events: {preset: nanoaod}"),
    ("io-events-branch-map-missing", _leptons("nanoaod", {"branches": {"Muon_eta": "mu_eta"}}),
     MissingKeyError, "lacks the branches 'mu_eta' (for muon_eta = 'mu_eta')"),
    ("io-events-weight-nan", _leptons("cms-tutorial", {"preset": "cms-tutorial"}, (1.0, float("nan"))),
     InputError, "weight 'eventweight' in tree 'events' is nan or inf at 1 of the 2 selected events"),
    ("io-events-weight-jagged", _leptons("nanoaod", {"weight": "Electron_pt"}), InputError,
     "weight 'electron_pt' in tree 'events' is jagged"),
    ("io-events-weight-missing", _leptons("nanoaod", {"weight": "genWeight2"}), MissingKeyError,
     "'genweight2' (for weight = 'genweight2')"),
    ("io-events-unknown-preset", lambda tmp: EventsConfig.from_dict({"preset": "nano"}), ConfigError,
     "events.preset: must be one of ['nanoaod', 'cms-tutorial']"),
    ("io-events-empty-selection", _leptons("nanoaod", {"cuts": {"m_Z2": [200, 300]}}), InputError,
     "no events selected by the selection leptonselection (cuts: exactly 2 e and 2 mu of opposite "
     "charge; 200 < m_z2 < 300 gev)"),
    (
        "io-write-bad-names",
        lambda tmp: write_events(tmp / "w.root", np.zeros((2, 2)), names=["a", "b c"]),
        InputError,
        "identifiers",
    ),
]
