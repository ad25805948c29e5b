"""The doctor's --out folder: everything it writes goes here, and nothing else is touched.

A marker file says the folder was made by `cnnlab doctor`; a folder that holds other files and no
marker belongs to the user and is refused, so a wrong --out never overwrites their work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnnlab.errors import UserError

MARKER = ".cnnlab-doctor"
RECOMMENDED = "recommended.yaml"
RESULT = "doctor.json"
REPORT = "report.html"
FIGURES = "figures"
RUNS = "runs"
STORAGE = "optuna.journal"
LR_TESTS = "lr_tests"


@dataclass(frozen=True)
class DoctorFolder:
    path: Path

    @property
    def recommended(self) -> Path:
        return self.path / RECOMMENDED

    @property
    def result(self) -> Path:
        return self.path / RESULT

    @property
    def report(self) -> Path:
        return self.path / REPORT

    @property
    def figures(self) -> Path:
        return self.path / FIGURES

    @property
    def runs(self) -> Path:
        return self.path / RUNS

    @property
    def lr_tests(self) -> Path:
        return self.path / LR_TESTS

    @property
    def storage_url(self) -> str:
        return str(self.path / STORAGE)


def claim(out: str | Path) -> DoctorFolder:
    """The --out folder, created or reused when an earlier doctor made it; a folder with files
    the doctor did not make is refused."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {str(out)!r} is a file; give a folder for the doctor's outputs "
                        "(it is created if missing)")
    if path.is_dir() and any(path.iterdir()) and not (path / MARKER).exists():
        raise UserError(f"--out {str(out)!r} holds files not made by cnnlab doctor; give a new "
                        "or empty folder so nothing of yours is overwritten")
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / MARKER).touch()
    except OSError as error:
        raise UserError(f"cannot create --out {str(out)!r} ({error.strerror}); give a folder "
                        "you can write to") from None
    folder = DoctorFolder(path)
    folder.figures.mkdir(exist_ok=True)
    return folder
