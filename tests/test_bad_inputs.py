"""The table of bad inputs: every case must raise the expected exception with a message that names
the problem (API and files), or exit with code 2 and one line, no traceback (CLI).

The cases live next to their areas: ``bad_inputs_api.py`` (models, training, inference, metrics,
priors, simulators), ``bad_inputs_io.py`` (ROOT files and branch expressions),
``bad_inputs_files.py`` (damaged weights, checkpoints, JSON), ``bad_inputs_cli.py`` (configs
and the command line), ``bad_inputs_safety.py`` (names that become paths, hostile configs,
calibration, locks) and ``bad_inputs_values.py`` (files changed after they were written,
non-finite values, model constructors; also the log-likelihoods that must never be NaN).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from bad_inputs_api import CASES as API_CASES
from bad_inputs_cli import CASES as CONFIG_CASES
from bad_inputs_cli import CLI_CASES
from bad_inputs_files import CASES as FILE_CASES
from bad_inputs_io import CASES as IO_CASES
from bad_inputs_safety import CASES as SAFETY_CASES
from bad_inputs_safety import CLI_CASES as SAFETY_CLI_CASES
from bad_inputs_simulations import CASES as SIMULATIONS_CASES
from bad_inputs_simulations import CLI_CASES as SIMULATIONS_CLI_CASES
from bad_inputs_values import CASES as VALUE_CASES
from bad_inputs_values import CLI_CASES as VALUE_CLI_CASES
from bad_inputs_values import RESULT_CASES

from mfinfer.cli import main

CASES = API_CASES + IO_CASES + FILE_CASES + CONFIG_CASES + SAFETY_CASES + VALUE_CASES + SIMULATIONS_CASES
ALL_CLI_CASES = CLI_CASES + SAFETY_CLI_CASES + VALUE_CLI_CASES + SIMULATIONS_CLI_CASES


def _param(case: tuple) -> object:
    """A table row as a pytest param: ``(id, *values)`` or ``(id, *values, marks)``."""
    marks = case[4:] if len(case) > 4 else ()
    return pytest.param(*case[1:4], id=case[0], marks=marks)


def test_the_table_is_large_and_ids_are_unique():
    ids = [c[0] for c in CASES] + [c[0] for c in ALL_CLI_CASES] + [c[0] for c in RESULT_CASES]
    assert len(ids) >= 60
    assert len(ids) == len(set(ids)), "duplicate case ids"


@pytest.mark.parametrize(("call", "exc_type", "keyword"), [_param(c) for c in CASES])
def test_api_rejects_bad_input_clearly(tmp_path: Path, call, exc_type, keyword) -> None:
    with pytest.raises(exc_type) as info:
        call(tmp_path)
    assert keyword.lower() in str(info.value).lower(), f"message does not name {keyword!r}: {info.value}"
    assert "weights_only=False" not in str(info.value), "never suggest the unsafe fix"


@pytest.mark.parametrize(("argv", "keyword"), [pytest.param(*c[1:], id=c[0]) for c in ALL_CLI_CASES])
def test_cli_rejects_bad_input_with_one_line(tmp_path: Path, argv, keyword) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv(tmp_path))
        except SystemExit as exit_:  # argparse errors
            code = exit_.code
    text = err.getvalue()
    assert code == 2, text
    assert "Traceback" not in text
    assert len(text.strip().splitlines()) == 1 or text.startswith("usage:"), text
    assert keyword.lower() in text.lower(), text


@pytest.mark.parametrize("call", [pytest.param(c[1], id=c[0]) for c in RESULT_CASES])
def test_log_likelihoods_are_never_nan(tmp_path: Path, call) -> None:
    import numpy as np

    out = np.asarray(call(tmp_path))
    assert not np.isnan(out).any() and not (out == np.inf).any(), out
