"""Image folders packed as .tar(.gz) or .zip archives, extracted once with path checks.

An archive member may not be an absolute path, climb out with `..`, or be a link or device
file; an archive that tries is refused with its member named, and nothing from it is used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from cnnlab.errors import DataError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".zip")


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _check_member(name: str, archive: Path) -> None:
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or name.startswith(("/", "\\")) or ":" in name:
        raise DataError(f"archive {archive} has an unsafe member '{name}' (absolute or outside "
                        "the archive); refusing to extract it")


def _extract_tar(archive: Path, destination: Path) -> None:
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member.name, archive)
            if not (member.isfile() or member.isdir()):
                raise DataError(f"archive {archive} has a link or special file '{member.name}'; "
                                "only regular files and folders are extracted")
        tar.extractall(destination, members=members, filter="data")


def _extract_zip(archive: Path, destination: Path) -> None:
    with zipfile.ZipFile(archive) as bundle:
        for name in bundle.namelist():
            _check_member(name, archive)
        bundle.extractall(destination)


def extract(archive: Path, cache_dir: Path) -> Path:
    """Extract `archive` under `cache_dir` (once per archive content) and return the folder."""
    stat = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    destination = cache_dir / "archives" / key.hexdigest()[:24]
    done = destination / ".complete"
    if done.exists():
        return _single_top_folder(destination)
    partial = destination.with_name(destination.name + f".{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        if archive.name.lower().endswith(".zip"):
            _extract_zip(archive, partial)
        else:
            _extract_tar(archive, partial)
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(f"cannot extract {archive} ({error})") from None
    except DataError:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    (partial / ".complete").write_text(str(archive))
    shutil.rmtree(destination, ignore_errors=True)
    os.replace(partial, destination)
    return _single_top_folder(destination)


def _single_top_folder(folder: Path) -> Path:
    """An archive that wraps everything in one folder (cifar10/train, cifar10/test) is read
    from inside that folder."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and entries[0].name not in ("train", "test"):
        return entries[0]
    return folder
