"""Locating raw files: explicit path, $RECRANKER_DATA-style root, archives, checked downloads.

No test touches the network: downloads use file:// URLs or an injected fetch function.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from recranker.data import download, locate, locate_raw, md5sum, read_raw
from recranker.errors import RecrankerError

FIXTURES = Path(__file__).parent / "fixtures"


def _zip(tmp_path: Path, name: str = "ml-100k.zip", inner: str = "ml-100k") -> Path:
    archive = tmp_path / name
    with zipfile.ZipFile(archive, "w") as zf:
        for f in (FIXTURES / "ml-100k").iterdir():
            zf.write(f, f"{inner}/{f.name}" if inner else f.name)
    return archive


def _no_network(url: str, dest: Path) -> None:
    raise AssertionError(f"test tried to download {url}")


def test_explicit_folder_or_parent_with_conventional_subfolder():
    assert locate("ml-100k", path=FIXTURES / "ml-100k", fetch=_no_network) == FIXTURES / "ml-100k"
    assert locate("ml-100k", path=FIXTURES, fetch=_no_network) == FIXTURES / "ml-100k"


def test_explicit_path_must_be_valid_no_silent_fallback(tmp_path):
    with pytest.raises(RecrankerError, match=r"datasets.x.path: .* does not exist"):
        locate("ml-100k", path=tmp_path / "nope", data_root=FIXTURES, label="datasets.x.path")
    with pytest.raises(RecrankerError, match=r"does not contain u.data, u.item"):
        locate("ml-100k", path=tmp_path, data_root=FIXTURES)


def test_data_root_then_archive_in_data_root(tmp_path):
    assert locate("ml-1m", data_root=FIXTURES, fetch=_no_network) == FIXTURES / "ml-1m"
    _zip(tmp_path)
    folder = locate("ml-100k", data_root=tmp_path, cache_dir=tmp_path / "cache", fetch=_no_network)
    assert folder == tmp_path / "cache" / "ml-100k" / "ml-100k"
    assert read_raw("ml-100k", folder).ratings.equals(
        read_raw("ml-100k", FIXTURES / "ml-100k").ratings
    )


def test_explicit_zip(tmp_path):
    archive = _zip(tmp_path, "copy.zip", inner="")
    folder = locate("ml-100k", path=archive, cache_dir=tmp_path / "cache")
    assert (folder / "u.data").is_file()
    with pytest.raises(RecrankerError, match="no cache folder"):
        locate("ml-100k", path=archive)
    (tmp_path / "bad.zip").write_bytes(b"PK not really")
    with pytest.raises(RecrankerError, match="not a valid zip"):
        locate("ml-100k", path=tmp_path / "bad.zip", cache_dir=tmp_path / "cache")


def test_zip_with_unsafe_member_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../escape.txt", "x")
    with pytest.raises(RecrankerError, match="unsafe member"):
        locate("ml-100k", path=archive, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "escape.txt").exists()


def test_download_with_checksum_from_file_url(tmp_path):
    archive = _zip(tmp_path)
    cache = tmp_path / "cache"
    folder = locate("ml-100k", cache_dir=cache, url=archive.as_uri(), md5=md5sum(archive))
    assert (folder / "u.data").is_file() and (cache / "ml-100k.zip").is_file()
    # A cached archive with the right checksum is reused without fetching.
    assert (
        locate(
            "ml-100k", cache_dir=cache, url=archive.as_uri(), md5=md5sum(archive), fetch=_no_network
        )
        == folder
    )


def test_checksum_mismatch_leaves_nothing_in_the_cache(tmp_path):
    archive = _zip(tmp_path)
    cache = tmp_path / "cache"
    with pytest.raises(RecrankerError) as err:
        locate("ml-100k", cache_dir=cache, url=archive.as_uri(), md5="0" * 32)
    msg = str(err.value)
    assert "checksum mismatch" in msg and f"expected {'0' * 32}" in msg and "\n" not in msg
    assert not (cache / "ml-100k.zip").exists()
    with pytest.raises(RecrankerError, match="checksum mismatch"):
        download(archive.as_uri(), "0" * 32, tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()


def test_offline_without_local_copy_is_one_clear_line(tmp_path):
    with pytest.raises(RecrankerError) as err:
        locate(
            "ml-100k",
            data_root=tmp_path,
            cache_dir=tmp_path / "cache",
            url=(tmp_path / "missing" / "ml-100k.zip").as_uri(),
            label="datasets.ml-100k.path",
        )
    msg = str(err.value)
    assert "\n" not in msg
    assert "download of file://" in msg and "failed" in msg
    assert "datasets.ml-100k.path" in msg and "$RECRANKER_DATA/ml-100k" in msg
    assert not (tmp_path / "cache").exists()  # a failed download leaves no folder behind

    # The real default URL with a fetch that fails like a machine without network:
    def offline(url, dest):
        raise OSError("Temporary failure in name resolution")

    with pytest.raises(RecrankerError, match="files.grouplens.org.*name resolution"):
        locate("ml-100k", cache_dir=tmp_path / "cache", fetch=offline)
    with pytest.raises(RecrankerError, match="download disabled"):
        locate("ml-100k", cache_dir=tmp_path / "cache", allow_download=False)


def test_bookcrossing_and_amazon_say_how_to_get_the_files(tmp_path):
    with pytest.raises(RecrankerError, match="no stable official download URL"):
        locate("bookcrossing", data_root=tmp_path, cache_dir=tmp_path / "cache")
    with pytest.raises(RecrankerError, match="not downloaded automatically"):
        locate_raw("amazon", data_root=tmp_path, cache_dir=tmp_path / "cache")
    shutil.copytree(FIXTURES / "bookcrossing", tmp_path / "BX-CSV-Dump")
    assert locate("bookcrossing", data_root=tmp_path) == tmp_path / "BX-CSV-Dump"
    shutil.copytree(FIXTURES / "amazon" / "2018", tmp_path / "amazon")
    assert locate_raw("amazon", data_root=tmp_path, category="Garden") == tmp_path / "amazon"
    with pytest.raises(RecrankerError, match="not downloaded automatically"):
        locate_raw("amazon", data_root=tmp_path, category="Books")


def test_unknown_format():
    with pytest.raises(RecrankerError, match="unknown dataset format 'netflix'"):
        locate("netflix", path=FIXTURES)
