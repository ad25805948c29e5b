"""The training loop stays readable: `fit` under 80 lines, the batch loop under 60; and neither
the loop's modules nor the config test a metric's averaging prefix as a string (one function,
`averaged_by`, reads it)."""

import ast
import re
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "src" / "cnnlab"
CHECKED_MODULES = ["config.py", "train.py", "train_state.py", "regularization/averaging.py",
                   "regularization/ema.py", "regularization/swa.py",
                   "regularization/early_stopping.py"]


def function_lengths(path: Path) -> dict[str, int]:
    tree = ast.parse(path.read_text())
    return {node.name: node.end_lineno - node.lineno + 1 for node in tree.body
            if isinstance(node, ast.FunctionDef)}


def test_fit_is_under_80_lines_and_the_batch_loop_under_60():
    lengths = function_lengths(SOURCE / "train.py")
    assert lengths["fit"] < 80
    assert lengths["train_epoch"] < 60


def test_the_batch_loop_is_the_loop_over_an_epoch_s_batches():
    tree = ast.parse((SOURCE / "train.py").read_text())
    loop = next(node for node in tree.body
                if isinstance(node, ast.FunctionDef) and node.name == "train_epoch")
    loops = [ast.unparse(node.iter) for node in ast.walk(loop) if isinstance(node, ast.For)]
    assert any(".batches.epoch(" in source for source in loops), loops


@pytest.mark.parametrize("module", CHECKED_MODULES)
def test_no_module_of_the_loop_or_config_tests_an_averaging_prefix_as_a_string(module):
    text = (SOURCE / module).read_text()
    assert not re.search(r"""startswith\(\s*["'](ema|swa)_""", text)
