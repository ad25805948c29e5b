"""Issue 20 item 12: archive extraction is bounded in expanded size and member count, refuses
with the numbers, and accepts member names with a colon where the file system does."""

import io
import os
import tarfile
import zipfile

import pytest

from cnnlab.data.archives import Limits, extract
from cnnlab.errors import DataError


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return path


def _tar(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as bundle:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    return path


def test_a_zip_that_expands_past_the_limit_is_refused_with_its_numbers(tmp_path):
    archive = _zip(tmp_path / "bomb.zip", {"a/zeros.bin": b"\0" * 4_000_000})
    with pytest.raises(DataError, match=r"expands to 4,000,000 bytes, over the limit of "
                                        r"1,000,000.*archive_max_gb"):
        extract(archive, tmp_path / "cache", Limits(max_bytes=1_000_000))
    assert not any((tmp_path / "cache").rglob("zeros.bin"))  # nothing was written


def test_a_tar_with_too_many_members_is_refused_with_its_numbers(tmp_path):
    archive = _tar(tmp_path / "many.tar.gz", {f"c/{i}.txt": b"x" for i in range(30)})
    with pytest.raises(DataError, match=r"holds more than 10 members, over the limit of 10"):
        extract(archive, tmp_path / "cache", Limits(max_files=10))
    archive = _tar(tmp_path / "big.tar.gz", {"c/big.bin": b"\0" * 50_000})
    with pytest.raises(DataError, match=r"expands to 50,000 bytes"):
        extract(archive, tmp_path / "cache", Limits(max_bytes=10_000))


def test_the_default_limits_pass_an_ordinary_archive(tmp_path):
    archive = _zip(tmp_path / "ok.zip", {"c0/a.txt": b"a", "c1/b.txt": b"b"})
    folder = extract(archive, tmp_path / "cache")
    assert (folder / "c0" / "a.txt").read_bytes() == b"a"


@pytest.mark.skipif(os.name == "nt", reason="a colon is not allowed in Windows file names")
@pytest.mark.parametrize("make", [_zip, _tar])
def test_member_names_with_a_colon_extract_on_posix(tmp_path, make):
    name = "archive.zip" if make is _zip else "archive.tar.gz"
    archive = make(tmp_path / name, {"cat/12:30:00.png": b"png", "dog/a.png": b"png"})
    folder = extract(archive, tmp_path / "cache")
    assert (folder / "cat" / "12:30:00.png").read_bytes() == b"png"


def test_climbing_out_is_still_refused(tmp_path):
    archive = _zip(tmp_path / "evil.zip", {"../evil.txt": b"x"})
    with pytest.raises(DataError, match="unsafe member"):
        extract(archive, tmp_path / "cache")
