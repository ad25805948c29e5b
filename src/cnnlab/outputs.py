"""Checks on the files and folders a command will write, made before it does any work, so a
typo in `--plot` or `--out` costs one sentence instead of a finished run and a traceback."""

from __future__ import annotations

from pathlib import Path

from cnnlab.errors import UserError


def plot_formats() -> list[str]:
    """The file extensions matplotlib can save a figure as (png, pdf, svg, ...)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted(FigureCanvasBase.get_supported_filetypes())


def check_parent_exists(path: str | Path, option: str) -> Path:
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder; give a file name inside it "
                        f"(e.g. {path / 'out.png'})")
    parent = path.parent
    if not parent.is_dir():
        raise UserError(f"{option} {path}: the folder {parent} does not exist; create it first "
                        f"(mkdir -p {parent}) or choose another path")
    return path


def check_plot_file(path: str | Path | None, option: str = "--plot") -> None:
    """A plot file whose extension matplotlib can write, in a folder that exists."""
    if path is None:
        return
    path = Path(path)
    formats = plot_formats()
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in formats:
        received = f"'.{suffix}'" if suffix else "no extension"
        raise UserError(f"{option} {path} has {received}, which matplotlib cannot write; end it "
                        f"in one of {', '.join('.' + f for f in formats)} (e.g. .png)")
    check_parent_exists(path, option)


def check_output_folder(path: str | Path | None, option: str) -> None:
    """A folder the command creates (with its parents) unless it is already there."""
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise UserError(f"{option} {path} is a file, but a folder is expected; give a folder "
                        "name (it is created if missing)")
