"""Image folders packed as .tar(.gz) or .zip archives, extracted once with path and size checks.

An archive member may not be an absolute path, climb out with `..`, or be a link or device
file; an archive that tries is refused with its member named, and nothing from it is used.
The expanded size and the member count are read from the archive's index before anything is
written and must stay under `Limits` (and the free disk space), so a small archive that expands
to gigabytes (a zip bomb) is refused with its numbers.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cnnlab.errors import DataError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".zip")


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


@dataclass(frozen=True)
class Limits:
    """How large an archive may expand. The defaults pass ImageNet-1k's training set (about
    140 GB in 1.28 million files) and stop a zip bomb well before it fills a disk."""

    max_bytes: int = 200 * 10**9
    max_files: int = 5_000_000


def _check_member(name: str, archive: Path) -> None:
    pure = PurePosixPath(name)
    # A colon is an ordinary character in Linux and macOS file names; on Windows it names a
    # drive or an alternate data stream.
    drive_like = os.name == "nt" and ":" in name
    if pure.is_absolute() or ".." in pure.parts or name.startswith(("/", "\\")) or drive_like:
        raise DataError(f"archive {archive} has an unsafe member '{name}' (absolute or outside "
                        "the archive); refusing to extract it")


def _check_size(archive: Path, files: int, size: int, limits: Limits, destination: Path
                ) -> None:
    if files > limits.max_files:
        # A tar is read only up to one member past the limit, so its count is a lower bound.
        count = f"{files:,}" if files > limits.max_files + 1 else f"more than {limits.max_files:,}"
        raise DataError(f"archive {archive} holds {count} members, over the limit of "
                        f"{limits.max_files:,}; raise data.archive_max_files if that is right")
    if size > limits.max_bytes:
        raise DataError(f"archive {archive} ({archive.stat().st_size:,} bytes) expands to "
                        f"{size:,} bytes, over the limit of {limits.max_bytes:,} (a zip bomb?); "
                        "raise data.archive_max_gb if that is right")
    free = shutil.disk_usage(destination).free
    if size > free:
        raise DataError(f"archive {archive} expands to {size:,} bytes but {destination} has "
                        f"{free:,} bytes free; free some space or set data.cache_dir to a "
                        "larger disk")


def _extract_tar(archive: Path, destination: Path, limits: Limits) -> None:
    with tarfile.open(archive) as tar:
        members = []
        for member in tar:  # reading the index of a compressed tar decompresses it, unwritten
            members.append(member)
            if len(members) > limits.max_files:
                break
        _check_size(archive, len(members), sum(m.size for m in members), limits, destination)
        for member in members:
            _check_member(member.name, archive)
            if not (member.isfile() or member.isdir()):
                raise DataError(f"archive {archive} has a link or special file '{member.name}'; "
                                "only regular files and folders are extracted")
        tar.extractall(destination, members=members, filter="data")


def _extract_zip(archive: Path, destination: Path, limits: Limits) -> None:
    with zipfile.ZipFile(archive) as bundle:
        infos = bundle.infolist()
        # zipfile stops each member at its declared size (and fails its checksum if the data
        # runs longer), so the declared sizes bound what extraction writes.
        _check_size(archive, len(infos), sum(i.file_size for i in infos), limits, destination)
        for info in infos:
            _check_member(info.filename, archive)
        bundle.extractall(destination)


def extract(archive: Path, cache_dir: Path, limits: Limits = Limits()) -> Path:
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
            _extract_zip(archive, partial, limits)
        else:
            _extract_tar(archive, partial, limits)
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
