"""Issue 20 items 9, 10, 12, 13: every bad input of bench/bad_inputs.py ends in one sentence on
stderr and exit status 2, before any training.

The catalogue lives in bench/bad_inputs.py (which runs each case in a subprocess and prints the
count for the README); here the cases run in-process through `cnnlab.cli.main`, which is the
same code path without a Python start per case, except the thread count, whose failure mode is a
segmentation fault that would take the test session down with it.
"""

import importlib.util
import subprocess
import sys

import pytest

from cnnlab.cli import main
from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("bad_inputs", ROOT / "bench" / "bad_inputs.py")
bad_inputs = importlib.util.module_from_spec(_spec)
sys.modules["bad_inputs"] = bad_inputs  # dataclasses look their module up there
_spec.loader.exec_module(bad_inputs)

IN_A_SUBPROCESS = {"threads_100000"}


@pytest.mark.parametrize("case", bad_inputs.CASES, ids=[c.name for c in bad_inputs.CASES])
def test_bad_input_ends_in_one_sentence_and_exit_2(case, tmp_path, capsys):
    args = case.build(tmp_path)
    if case.name in IN_A_SUBPROCESS:
        result = subprocess.run([sys.executable, "-m", "cnnlab", *args], capture_output=True,
                                text=True, timeout=120)
        returncode, stderr = result.returncode, result.stderr
    else:
        capsys.readouterr()
        returncode = main(args)
        stderr = capsys.readouterr().err
    assert bad_inputs.verdict(returncode, stderr, case.expect) is None, stderr[:2000]
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before training


def test_the_catalogue_covers_every_item_of_the_issue():
    items = {case.item for case in bad_inputs.CASES}
    assert {"9", "10", "12", "13"} <= items
    names = [case.name for case in bad_inputs.CASES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("stderr, returncode, problem", [
    ("error: data.root: nope\n", 2, None),
    ("Traceback (most recent call last):\nValueError: x\n", 1, "exit 1"),
    ("warning: something\nerror: x\n", 2, "2 lines on stderr"),
    ("error: " + "x" * 2000 + "\n", 2, "message of 2007 characters"),
    ("", 0, "exit 0"),
])
def test_the_verdict_tells_one_sentence_from_everything_else(stderr, returncode, problem):
    assert bad_inputs.verdict(returncode, stderr) == problem
