"""The config is validated whole when it is loaded, and the CLI turns every expected error into
one line and exit code 2 (the cases are in ``tests/bad_inputs_cli.py``, run by
``tests/test_bad_inputs.py``); ``--debug`` shows the traceback; unexpected errors exit 1 with one
line; valid configs load."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_inputs_cli import set_field, write_config

import mfinfer.cli
from mfinfer.cli import main
from mfinfer.config import RunConfig, load_config
from mfinfer.errors import InputError

ROOT = Path(__file__).parents[1]
VALID = [ROOT / "tests" / "configs" / "tiny.yaml", ROOT / "tests" / "configs" / "higgs4l_tiny.yaml",
         *sorted(ROOT.glob("analyses/*/config.yaml"))]


def _main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.parent.name if p.name == "config.yaml" else p.stem)
def test_valid_config_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, RunConfig) and cfg.models and cfg.seeds


def test_loading_leaves_the_torch_rng_alone():
    state = torch.random.get_rng_state()
    load_config(VALID[0])
    assert torch.equal(state, torch.random.get_rng_state())


def test_overrides_are_validated_and_applied(tmp_path):
    cfg = load_config(write_config(tmp_path), {"seeds": [3, 4], "device": "auto"})
    assert cfg.seeds == [3, 4] and cfg.device == "auto"


@pytest.mark.parametrize("position", ["global", "after the subcommand"])
def test_debug_shows_the_traceback(tmp_path, position):
    missing = str(tmp_path / "missing.yaml")
    argv = ["--debug", "run", missing] if position == "global" else ["run", missing, "--debug"]
    code, _, err = _main(argv)
    assert code == 2
    assert "Traceback" in err and "FileNotFoundError" in err and "config file not found" in err


def test_unexpected_error_is_one_line_exit_1(tmp_path, monkeypatch):
    def boom(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(mfinfer.cli, "cmd_run", boom)
    code, _, err = _main(["run", str(tmp_path / "c.yaml")])
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "unexpected error: RuntimeError: boom second line" in err and "--debug" in err
    code, _, err = _main(["--debug", "run", str(tmp_path / "c.yaml")])
    assert code == 1 and "Traceback" in err


def test_keyboard_interrupt_exits_130(tmp_path, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(mfinfer.cli, "cmd_train", interrupted)
    code, _, err = _main(["train", str(tmp_path / "c.yaml")])
    assert code == 130 and "interrupted" in err and "Traceback" not in err


def test_help_exits_0():
    assert _main(["--help"])[0] == 0


# ------------------------------------------------------------------ user ROOT files (--events)
def _user_file(tmp_path: Path) -> Path:
    """Tree ``Events``: flat ``a``, ``b``, ``c`` and a collection ``Electron_pt`` empty in the second
    of three events."""
    import awkward as ak
    import uproot

    path = tmp_path / "user.root"
    el = ak.zip({"pt": ak.Array([[30.0, 20.0], [], [15.0]])})
    with uproot.recreate(path) as f:
        f.mktree("Events", {"Electron": el.type, "a": np.float64, "b": np.float64, "c": np.float64})
        f["Events"].extend({"Electron": el, "a": np.array([0.1, 0.2, 0.3]), "b": np.zeros(3),
                            "c": np.ones(3)})
    return path


class _LeadingElectron:
    """A selection: events with an electron; the observable is the leading electron's pT."""

    def __init__(self, min_pt: float = 0.0) -> None:
        self.min_pt = min_pt

    def __repr__(self) -> str:
        return f"_LeadingElectron(min_pt={self.min_pt})"

    def inputs(self) -> list[str]:
        return ["Electron_pt"]

    def select(self, arrays):
        import awkward as ak

        pt = arrays["Electron_pt"]
        keep = ak.num(pt) > 0
        lead = ak.to_numpy(ak.max(pt[keep], axis=1))
        lead = lead[lead > self.min_pt]
        return lead[:, None], ["pt"]


def test_read_user_events_logs_selected_of_total(tmp_path, caplog):
    from mfinfer.io import read_user_events

    path = _user_file(tmp_path)
    with caplog.at_level(logging.INFO, logger="mfinfer.io"):
        x, names = read_user_events(path, "Events", selection=_LeadingElectron())
    assert x.shape == (2, 1) and names == ["pt"]
    assert f"selected 2 of 3 events from {path}" in caplog.text


def test_empty_selection_names_the_file_and_the_selection(tmp_path):
    from mfinfer.io import read_user_events

    path = _user_file(tmp_path)
    with pytest.raises(InputError, match=r"user.root: no events selected by the selection "
                                         r"_LeadingElectron\(min_pt=100.0\) from the 3 entries"):
        read_user_events(path, "Events", selection=_LeadingElectron(min_pt=100.0))


def test_infer_prints_selected_of_total(tmp_path):
    # nothing is simulated or trained, so infer stops after reading the events: exit 2. A name of
    # its own: a run's logger (and its log.txt handler) is per name and seed, for the session.
    path = _user_file(tmp_path)
    cfg = write_config(tmp_path, set_field("name", "events-test"))
    code, out, err = _main(["infer", str(cfg), "--events", str(path), "--tree",
                            "Events", "--branches", "a", "b", "c", "--quiet"])
    assert f"selected 3 of 3 events from {path}" in out
    assert code == 2 and "Traceback" not in err
