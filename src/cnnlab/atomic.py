"""Writing a file so that readers see the old content or the new one, never a mix.

Every file cnnlab rewrites (run-folder files, checkpoints, weights, diagnostics, a repaired study
journal, the image cache) goes through `replace_atomically`: the content is written to a temporary
file next to the target, which is then renamed over it (a rename within one folder is atomic).
A write that fails (a full disk) removes its partial file, so that it neither takes the space nor
is mistaken for a complete one.

`durable=True` also flushes the file and then its folder to disk, so that the new content survives
a power cut and not only a crash of this process; checkpoints and exported weights pay for it,
files rewritten every epoch do not.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# What a file is written from: its bytes, its text (UTF-8), or a function that writes into the
# open binary file (np.save, np.savez_compressed, ...).
Content = bytes | memoryview | str | Callable[[BinaryIO], object]


def temporary_for(path: Path) -> Path:
    """The temporary file `replace_atomically` writes before renaming it over `path`."""
    return path.with_name(path.name + ".tmp")


def write_file(path: Path, content: Content, *, durable: bool = False) -> None:
    """Write `content` to `path` in place (not atomic: see `replace_atomically`). A failed write
    removes the partial file, and its OSError names the file (a failed write() names none)."""
    path = Path(path)
    try:
        with open(path, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode() if isinstance(content, str) else content)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
    except BaseException as error:
        path.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None:
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise


def fsync_directory(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(path: Path, content: Content, *, durable: bool = False,
                       temporary: Path | None = None) -> None:
    """Write `content` to a temporary file beside `path`, then rename it over `path`.

    `temporary` names that file when several processes may write the same target at once (a
    shared cache); by default it is `path` with `.tmp` appended."""
    path = Path(path)
    temporary = temporary or temporary_for(path)
    write_file(temporary, content, durable=durable)
    os.replace(temporary, path)
    if durable:
        fsync_directory(path.parent)
