"""Issue 16 item 6: the run folder owns every file name. A run-folder file name written as a
string literal anywhere in src/cnnlab outside cnnlab/rundir.py fails here, naming file:line;
other modules take the paths from a RunDir or rundir's constants. Prose (docstrings, comments,
messages that mention a file) is allowed: only a literal that is a path is a file name."""

from __future__ import annotations

import ast

from cnnlab import rundir
from tests.conftest import ROOT

SOURCE = ROOT / "src" / "cnnlab"
OWNER = SOURCE / "rundir.py"
# Every file name rundir defines.
NAMES = {value for name, value in vars(rundir).items()
         if name.isupper() and isinstance(value, str)}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def names_in(text: str) -> list[tuple[int, str]]:
    """(line, name) of each string literal in `text` that is a run-folder file name or a path
    with one as a part ("checkpoints/last.pt"); the fragments of f-strings count."""
    tree = ast.parse(text)
    docstrings = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in docstrings):
            parts = {part.strip() for part in node.value.replace("\\", "/").split("/")}
            hits.extend((node.lineno, name) for name in sorted(parts & NAMES))
    return hits


def test_the_scan_knows_every_run_folder_file():
    assert {"config.yaml", "config.sha256", ".lock", "environment.json", "metrics.jsonl",
            "summary.json", "checkpoints", "model.safetensors", "best.safetensors",
            "classes.json", "diagnostics.npz", "diagnostics.json", "last.pt",
            "previous.pt", "model_raw.safetensors", "early_stopping_best.safetensors"} <= NAMES


def test_the_scan_finds_literals_and_allows_prose():
    text = ('"""summary.json, in a docstring."""\n'
            'A = "summary.json"\n'
            'B = folder / "checkpoints" / "best.safetensors"\n'
            'C = f"{folder}/metrics.jsonl"\n'
            'D = "written into summary.json as resume_changes"\n')
    assert sorted(names_in(text)) == [(2, "summary.json"), (3, "best.safetensors"),
                                      (3, "checkpoints"), (4, "metrics.jsonl")]


def test_no_run_folder_file_name_outside_the_run_folder_module():
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        if path == OWNER:
            continue
        found.extend(f"{path.relative_to(ROOT)}:{line}: {name!r}"
                     for line, name in names_in(path.read_text()))
    assert not found, ("run-folder file names outside cnnlab/rundir.py (take the path from "
                       "RunDir or a rundir constant):\n" + "\n".join(found))
