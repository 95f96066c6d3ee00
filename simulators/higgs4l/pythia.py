"""Pythia 8 as an external H -> ZZ* -> 2e2mu generator (``pythia8mc``, imported lazily).

``PythiaHiggs4l`` generates ``g g -> H -> Z Z* -> (e- e+)(mu- mu+)`` at 13 TeV with Pythia's
built-in HZZ decay correlations and returns the same observables as
:class:`simulators.higgs4l.Higgs4l` (:func:`simulators.higgs4l.kinematics.observables`). Its role is
validation: an independent implementation of the decay matrix element, plus optional parton shower,
QED FSR, MPI and hadronisation.

Pythia's parameters (``xmldoc/HiggsProcesses.xml``; code in ``SigmaProcess::weightHiggsDecay``).
With ``Higgs:useBSM = on`` the ``h0(H1)`` (PDG 25) decay angles follow ``HiggsH1:parity``:

- ``1``: pure scalar (CP-even), weight ``8[(1 + A) p35 p46 + (1 - A) p36 p45]``: exactly our
  ``|M|^2`` at ``(a1, a2, a3) = (1, 0, 0)`` (the SM);
- ``2``: pure pseudoscalar (CP-odd): our ``|M|^2`` at ``(a1, a2, a3) = (0, 0, 1)`` divided by
  ``m1^2 m2^2`` (same angles at fixed masses, a different ``m1, m2`` lineshape);
- ``3``: mixture with parameter ``eta = HiggsH1:etaParity``: the weight numerator is exactly our
  ``|M|^2`` at

      a1 = 1,   a2 = 0,   a3 = -eta / 2          (eta = -2 a3)

  (checked numerically to 1e-12, ``tests/test_pythia.py::test_parameter_mapping``; the sign follows
  our ``eps^{0123} = +1``). Pythia divides each event's weight by
  ``1 + 2 |eta| m1 m2 / mZ^2 + 2 eta^2 m1^2 m2^2 (1 + A) / mZ^4`` to keep it below one; this
  reshapes the ``m1, m2`` distribution (not the angles at fixed masses) away from the true
  ``|M|^2``.
  ``eta = 0`` is identical to parity 1;
- ``4`` (``HiggsH1:phiParity``) only affects ``h -> f fbar``; ``Z Z`` decays are then isotropic.

``A = 4 v1 a1 v2 a2 / ((v1^2 + a1^2)(v2^2 + a2^2))`` with the Z couplings of the two lepton pairs;
``a2`` (CP-even higher-dimensional) has no Pythia counterpart. So theta here is ``(eta,)`` with the
default ``parity="mixed"``; ``parity="even"`` / ``"odd"`` / ``"isotropic"`` fix the decay and ignore
theta. Our prior box ``a3 in [-2, 2]`` corresponds to ``eta in [-4, 4]`` (the default prior).

Lineshapes: Pythia picks each Z mass from its own Breit-Wigner (running width, ``23:mMin = 10`` GeV)
before the angular weight, so ``m_Z1, m_Z2`` (and, through them, small parts of the angular
distributions) need not match :class:`Higgs4l`; the Higgs is produced in gluon fusion with Pythia's
own pT/rapidity, so only rest-frame decay angles are comparable.

Generation: both Z are forced to e+e- or mu+mu- (``23:onIfAny = 11 13``), Pythia picks the two
decays independently, so only the 2e2mu half of the events is kept and generation continues until a
chunk has its events. Pythia initialises once per theta value (~0.5 s), so rows of theta are grouped
by value into chunks of at most ``chunk_size`` events; each chunk runs with its own Pythia seed,
derived from (base seed, chunk index), so the result does not depend on the number of workers.
Chunks run in-process (``n_workers=1``), on a ``dask.distributed.LocalCluster`` of worker processes
on loopback (``n_workers > 1``), or on an existing scheduler (``scheduler="tcp://host:port"``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mfinfer.parallel import dask_client
from mfinfer.priors import BoxUniform, Prior
from simulators.base import Simulator, check_theta
from simulators.higgs4l import kinematics as kin
from simulators.higgs4l.selection import LeptonSelection

__all__ = ["PARITY_MODES", "PythiaHiggs4l", "a3_from_eta", "eta_from_a3", "generate_chunk"]

#: ``parity`` option -> Pythia ``HiggsH1:parity``.
PARITY_MODES = {"isotropic": 0, "even": 1, "odd": 2, "mixed": 3}
_MAX_SEED = 900_000_000  # Pythia's Random:seed range is 0..900_000_000


def eta_from_a3(a3: np.ndarray | float) -> np.ndarray:
    """Pythia's ``HiggsH1:etaParity`` (parity 3) for our CP-odd coupling ``a3`` (a1 = 1, a2 = 0)."""
    return -2.0 * np.asarray(a3, dtype=float)


def a3_from_eta(eta: np.ndarray | float) -> np.ndarray:
    """Our ``a3`` (a1 = 1, a2 = 0) for Pythia's ``HiggsH1:etaParity``; inverse of
    :func:`eta_from_a3`."""
    return -0.5 * np.asarray(eta, dtype=float)


def _import_pythia():
    try:
        import pythia8mc
    except ImportError as err:
        raise ImportError(
            "PythiaHiggs4l needs Pythia 8's Python bindings: pip install 'pythia8mc==8.317.2' "
            "(or pip install 'mfinfer[pythia]')"
        ) from err
    return pythia8mc


def _settings(
    parity: int,
    eta: float,
    seed: int,
    ecm: float,
    shower: bool,
    hadronisation: bool,
    qed_fsr: bool,
    mpi: bool,
) -> list[str]:
    parton = shower or qed_fsr or mpi or hadronisation
    s = [
        "Print:quiet = on",
        "Next:numberCount = 0",
        f"Beams:eCM = {ecm:.6f}",
        "Higgs:useBSM = on",  # else H1 is forced to SM parity
        "HiggsBSM:gg2H1 = on",
        "25:m0 = 125.0",
        "25:onMode = off",
        "25:onIfMatch = 23 23",
        "23:onMode = off",
        "23:onIfAny = 11 13",
        f"HiggsH1:parity = {parity}",
        f"HiggsH1:etaParity = {eta:.17g}",
        "Random:setSeed = on",
        f"Random:seed = {seed}",
        f"PartonLevel:all = {'on' if parton else 'off'}",
        f"HadronLevel:all = {'on' if hadronisation else 'off'}",
    ]
    if parton:
        s += [
            f"PartonLevel:ISR = {'on' if shower else 'off'}",
            f"PartonLevel:FSR = {'on' if shower or qed_fsr else 'off'}",
            f"PartonLevel:MPI = {'on' if mpi else 'off'}",
            f"TimeShower:QCDshower = {'on' if shower else 'off'}",
            f"TimeShower:QEDshowerByL = {'on' if qed_fsr else 'off'}",
            f"TimeShower:QEDshowerByQ = {'on' if qed_fsr else 'off'}",
            f"SpaceShower:QEDshowerByL = {'on' if qed_fsr else 'off'}",
            f"SpaceShower:QEDshowerByQ = {'on' if qed_fsr else 'off'}",
        ]
    return s


def _leptons(record: Any) -> np.ndarray | None:
    """(4, 4) momenta of (e-, e+, mu-, mu+) from the Z decays in a Pythia event record, or None when
    the event is not 2e2mu. Follows each lepton to its last copy (after QED FSR recoils)."""
    found: dict[int, np.ndarray] = {}
    for i in range(record.size()):
        z = record[i]
        if z.id() != 23 or z.iBotCopyId() != i:  # the last copy of each Z
            continue
        for d in range(z.daughter1(), z.daughter2() + 1):
            lep = record[record[d].iBotCopyId()]
            if lep.idAbs() in (11, 13):
                found[lep.id()] = np.array([lep.e(), lep.px(), lep.py(), lep.pz()])
    if len(found) != 4 or set(found) != {11, -11, 13, -13}:
        return None
    return np.stack([found[11], found[-11], found[13], found[-13]])


def generate_chunk(
    n: int, parity: int, eta: float, seed: int, options: dict[str, Any]
) -> dict[str, Any]:
    """Generate ``n`` 2e2mu events with one Pythia instance (runs in a worker process).

    Arguments:
        n: number of 2e2mu events wanted.
        parity: Pythia ``HiggsH1:parity`` (0-3).
        eta: ``HiggsH1:etaParity`` (used for parity 3).
        seed: Pythia ``Random:seed`` (1..900000000).
        options: ``ecm, shower, hadronisation, qed_fsr, mpi``.

    Returns:
        ``{"momenta": (n, 4, 4) (e-, e+, mu-, mu+; E, px, py, pz), "tries": int,
        "seconds": float}``.
    """
    pythia8mc = _import_pythia()
    start = time.perf_counter()
    py = pythia8mc.Pythia("", False)  # no banner
    for line in _settings(parity, eta, seed, **options):
        if not py.readString(line):
            raise RuntimeError(f"Pythia rejected the setting {line!r}")
    if not py.init():
        raise RuntimeError(f"Pythia failed to initialise (parity={parity}, eta={eta}, seed={seed})")
    use_event = any(options[k] for k in ("shower", "hadronisation", "qed_fsr", "mpi"))
    out = np.empty((n, 4, 4))
    got = tries = failures = 0
    while got < n:
        tries += 1
        if not py.next():
            failures += 1
            if failures > 100 + n:
                raise RuntimeError(
                    f"Pythia failed {failures} times in {tries} events (seed {seed})"
                )
            continue
        lep = _leptons(py.event if use_event else py.process)
        if lep is not None:
            out[got] = lep
            got += 1
    return {"momenta": out, "tries": tries, "seconds": time.perf_counter() - start}


def _chunk_seed(base: int, index: int) -> int:
    return int(np.random.SeedSequence([base, index]).generate_state(1)[0]) % _MAX_SEED + 1


@dataclass
class _Stats:
    events: int = 0
    tries: int = 0
    chunks: int = 0
    cpu_seconds: float = 0.0  # summed over chunks (Pythia init + generation)
    wall_seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        """Accepted 2e2mu events per second of wall time."""
        return self.events / self.wall_seconds if self.wall_seconds > 0 else float("nan")


class PythiaHiggs4l(Simulator):
    """``g g -> H -> Z Z* -> 2e2mu`` from Pythia 8 with CP-even / CP-odd / mixed HZZ decays.

    theta is ``(eta,)``, Pythia's ``HiggsH1:etaParity`` (``a3 = -eta/2`` in
    :class:`simulators.higgs4l.Higgs4l`'s convention, ``a2 = 0``; see the module docstring). Events
    are :data:`simulators.higgs4l.kinematics.OBSERVABLE_NAMES` (38 columns).

    Arguments:
        parity: ``"mixed"`` (theta = eta), or ``"even"``, ``"odd"``, ``"isotropic"`` (theta
            ignored).
        prior: prior over eta; default uniform on [-4, 4] (= a3 in [-2, 2]).
        shower: QCD initial- and final-state showers.
        hadronisation: string fragmentation (needs beam remnants, so turns the parton level on).
        qed_fsr: QED radiation off the leptons (and quarks).
        mpi: multiparton interactions.
        ecm: proton-proton centre-of-mass energy, GeV.
        chunk_size: most events per Pythia instance (one seed each).
        n_workers: 1 runs chunks in this process; more start a ``dask.distributed.LocalCluster``
            of that many single-threaded worker processes on 127.0.0.1 per call.
        scheduler: address of a running dask scheduler to use instead (``"tcp://127.0.0.1:8786"``).

    Example:
        >>> sim = PythiaHiggs4l(parity="even")             # doctest: +SKIP
        >>> x = sim.sample(np.zeros((1000, 1)), rng=1)     # (1000, 38), doctest: +SKIP
    """

    param_dim = 1
    data_dim = len(kin.OBSERVABLE_NAMES)
    manifold_dim = 11

    def __init__(
        self,
        parity: Literal["mixed", "even", "odd", "isotropic"] = "mixed",
        prior: Prior | None = None,
        shower: bool = False,
        hadronisation: bool = False,
        qed_fsr: bool = False,
        mpi: bool = False,
        ecm: float = 13000.0,
        chunk_size: int = 5000,
        n_workers: int = 1,
        scheduler: str | None = None,
    ) -> None:
        if parity not in PARITY_MODES:
            raise ValueError(f"parity: must be one of {tuple(PARITY_MODES)}, got {parity!r}")
        if chunk_size < 1 or n_workers < 1:
            raise ValueError(f"chunk_size, n_workers: expected >= 1, got {chunk_size}, {n_workers}")
        if prior is not None and prior.dim != 1:
            raise ValueError(f"prior: expected a 1-d prior over eta, got dim {prior.dim}")
        self.parity = parity
        self.prior = prior if prior is not None else BoxUniform((-4.0,), (4.0,))
        self.options = {
            "ecm": float(ecm),
            "shower": bool(shower),
            "hadronisation": bool(hadronisation),
            "qed_fsr": bool(qed_fsr),
            "mpi": bool(mpi),
        }
        self.chunk_size = int(chunk_size)
        self.n_workers = int(n_workers)
        self.scheduler = scheduler
        #: Statistics of the last :meth:`sample` call (events, tries, seconds, events_per_second).
        self.last_stats = _Stats()

    def __repr__(self) -> str:
        on = [k for k in ("shower", "hadronisation", "qed_fsr", "mpi") if self.options[k]]
        return f"PythiaHiggs4l(parity={self.parity!r}, on={on}, n_workers={self.n_workers})"

    def event_selection(self, **options: Any) -> LeptonSelection:
        """The 2e2mu selection that turns a ROOT file's lepton collections into this simulator's
        observables: ``LeptonSelection(**options)`` (the same as :class:`Higgs4l
        <simulators.higgs4l.Higgs4l>`'s), for :func:`mfinfer.io.read_user_events`'s
        ``selection``."""
        return LeptonSelection(**options)

    # -- generation ---------------------------------------------------------------------------
    def momenta(
        self, theta: np.ndarray, rng: np.random.Generator | int | None = None
    ) -> np.ndarray:
        """Lepton four-momenta for one event per theta row: (n, 1) -> (n, 4, 4) ordered e-, e+, mu-,
        mu+, each (E, px, py, pz) in GeV in the lab frame."""
        theta = (
            check_theta(theta, self.prior)
            if self.parity == "mixed"
            else np.asarray(theta, dtype=float).reshape(-1, 1)
        )
        n = len(theta)
        base = int(np.random.default_rng(rng).integers(2**62))
        parity = PARITY_MODES[self.parity]
        eta = theta[:, 0] if self.parity == "mixed" else np.zeros(n)
        # chunks: rows grouped by eta value (in order of first appearance), at most chunk_size each
        values, first, inverse = np.unique(eta, return_index=True, return_inverse=True)
        tasks, rows = [], []
        for v in np.argsort(first):
            idx = np.flatnonzero(inverse == v)
            for s in range(0, len(idx), self.chunk_size):
                part = idx[s : s + self.chunk_size]
                tasks.append((len(part), parity, float(values[v]), _chunk_seed(base, len(tasks))))
                rows.append(part)
        start = time.perf_counter()
        results = self._run(tasks)
        out = np.empty((n, 4, 4))
        for part, res in zip(rows, results, strict=True):
            out[part] = res["momenta"]
        self.last_stats = _Stats(
            events=n,
            tries=sum(r["tries"] for r in results),
            chunks=len(tasks),
            cpu_seconds=sum(r["seconds"] for r in results),
            wall_seconds=time.perf_counter() - start,
        )
        return out

    def _run(self, tasks: list[tuple[int, int, float, int]]) -> list[dict[str, Any]]:
        if self.scheduler is None and (self.n_workers == 1 or len(tasks) == 1):
            return [generate_chunk(*t, self.options) for t in tasks]
        try:
            import dask.distributed  # noqa: F401
        except ImportError as err:
            raise ImportError(
                "parallel Pythia needs dask.distributed: pip install 'dask[distributed]'"
            ) from err
        with dask_client(self.n_workers, self.scheduler, quiet=True) as client:
            return self._gather(client, tasks)

    def _gather(
        self, client: Any, tasks: list[tuple[int, int, float, int]]
    ) -> list[dict[str, Any]]:
        futures = [client.submit(generate_chunk, *t, self.options, pure=False) for t in tasks]
        return client.gather(futures)

    def sample(self, theta: np.ndarray, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Simulate one 2e2mu event per theta row: (n, 1) eta -> (n, 38) observables.

        Rows are grouped by eta value (Pythia re-initialises per value, ~0.5 s each): draw theta on
        a grid or use :meth:`simulate`, which draws one eta per chunk.
        """
        return kin.observables(*self.momenta(theta, rng).transpose(1, 0, 2))

    def simulate(
        self, n: int, rng: np.random.Generator | int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw eta ~ prior once per chunk of ``chunk_size`` events and simulate: returns
        ``(theta (n, 1), x (n, 38))``."""
        rng = np.random.default_rng(rng)
        n_chunks = -(-n // self.chunk_size)
        theta = np.repeat(self.prior.sample(n_chunks, rng), self.chunk_size, axis=0)[:n]
        return theta, self.sample(theta, rng)
