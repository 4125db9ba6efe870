"""Where raw files come from: an explicit path, then ``$RECRANKER_DATA``, then a checked download.

The library never reads the environment or picks paths on its own: the caller (the stage) passes
``path`` (``datasets.<name>.path``), ``data_root`` (``$RECRANKER_DATA``) and ``cache_dir`` (where
archives are downloaded and unpacked). The downloader is a parameter, so tests can exercise the
checksum and offline paths with ``file://`` URLs and never touch the network.
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recranker.errors import RecrankerError
from recranker.io import atomic_path

Fetch = Callable[[str, Path], None]


@dataclass(frozen=True)
class Source:
    """How to recognise, find and obtain one raw format."""

    folders: tuple[str, ...]  # conventional folder names under $RECRANKER_DATA, first = preferred
    marker_files: tuple[str, ...]  # a folder holding all of these is a complete copy
    url: str | None = None
    md5: str | None = None
    how_to_get: str = ""


SOURCES: dict[str, Source] = {
    "ml-100k": Source(
        ("ml-100k",),
        ("u.data", "u.item"),
        "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        "0e33842e24a9c977be4e0107933c0723",
    ),
    "ml-1m": Source(
        ("ml-1m",),
        ("ratings.dat", "movies.dat"),
        "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        "c4d9eecfca2ab87c1945afe126590906",
    ),
    "bookcrossing": Source(
        ("bookcrossing", "BX-CSV-Dump", "book-crossing"),
        ("BX-Book-Ratings.csv", "BX-Books.csv"),
        how_to_get="BookCrossing has no stable official download URL any more; obtain "
        "BX-CSV-Dump.zip (BX-Book-Ratings.csv, BX-Books.csv) yourself",
    ),
    "amazon": Source(
        ("amazon",),
        (),
        how_to_get="Amazon reviews are not downloaded automatically; get a category's ratings CSV, "
        "reviews_*.json.gz (2014) or *.json.gz + meta_*.json.gz (2018) from the McAuley lab pages",
    ),
    "recbole": Source(
        ("recbole",),
        (),
        how_to_get="RecBole atomic files are not downloaded; put <name>.inter (and <name>.item) in one folder",
    ),
}

FORMATS = tuple(SOURCES)


def source(fmt: str) -> Source:
    if fmt not in SOURCES:
        raise RecrankerError(f"unknown dataset format '{fmt}' (known: {', '.join(FORMATS)})")
    return SOURCES[fmt]


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def urllib_fetch(url: str, dest: Path, timeout: float = 30.0) -> None:
    """Stream ``url`` into ``dest`` (works for http(s) and file:// URLs)."""
    with urllib.request.urlopen(url, timeout=timeout) as resp, dest.open("wb") as out:
        shutil.copyfileobj(resp, out, 1 << 20)


def _complete(
    folder: Path, markers: tuple[str, ...], is_complete: Callable[[Path], bool] | None
) -> bool:
    if not folder.is_dir():
        return False
    if is_complete is not None:
        return is_complete(folder)
    return all((folder / m).is_file() for m in markers)


def _find_complete(root: Path, src: Source, is_complete) -> Path | None:
    """``root`` itself or one of its conventional subfolders, if it holds the files."""
    for cand in (root, *(root / f for f in src.folders)):
        if _complete(cand, src.marker_files, is_complete):
            return cand
    return None


def extract_zip(archive: Path, dest: Path, src: Source, is_complete=None) -> Path:
    """Unpack ``archive`` into ``dest`` (atomically) and return the folder with the data files."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if name.startswith(("/", "\\")) or ".." in Path(name).parts:
                    raise RecrankerError(f"{archive}: unsafe member path '{name}' in archive")
            with atomic_path(dest, is_dir=True) as tmp:
                zf.extractall(tmp)
    except zipfile.BadZipFile:
        raise RecrankerError(f"{archive}: not a valid zip archive") from None
    candidates = [dest, *sorted(p for p in dest.rglob("*") if p.is_dir())]
    found = [c for c in candidates if _complete(c, src.marker_files, is_complete)]
    if len(found) > 1:  # never guess which copy the user meant (the first in sort order was used)
        names = ", ".join(f"'{c.relative_to(dest).as_posix() or '.'}'" for c in found)
        raise RecrankerError(f"{archive}: {len(found)} dataset folders in the archive ({names}); "
                             "keep one, or unpack it and set the path to that folder")
    if found:
        return found[0]
    wanted = ", ".join(src.marker_files) or "the data files"
    raise RecrankerError(f"{archive}: archive does not contain {wanted}")


def download(url: str, md5: str | None, dest: Path, fetch: Fetch = urllib_fetch) -> Path:
    """Fetch ``url`` to ``dest`` unless a copy with the right checksum is already there.

    The file only appears at ``dest`` after its MD5 matched, so a failed or tampered download
    never poisons the cache.
    """
    if dest.is_file() and (md5 is None or md5sum(dest) == md5):
        return dest
    with atomic_path(dest) as tmp:
        try:
            fetch(url, tmp)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RecrankerError(f"download of {url} failed ({reason})") from None
        if md5 is not None and (got := md5sum(tmp)) != md5:
            raise RecrankerError(
                f"download of {url}: checksum mismatch (md5 {got}, expected {md5})"
            )
    return dest


def locate(
    fmt: str,
    *,
    path: str | Path | None = None,
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    allow_download: bool = True,
    fetch: Fetch = urllib_fetch,
    url: str | None = None,
    md5: str | None = None,
    is_complete: Callable[[Path], bool] | None = None,
    label: str = "path",
) -> Path:
    """Return a folder holding the raw files of ``fmt``.

    Looks, in order, at ``path`` (a folder, a folder with a conventional subfolder, or the official
    ``.zip``; if given it must be valid — no silent fallback), ``data_root/<conventional folder>``
    (or ``data_root/<folder>.zip``), then downloads the official archive into ``cache_dir``
    (checked against its MD5). ``url``/``md5`` override the official ones; ``is_complete``
    overrides the marker-file test (Amazon folders hold category-named files). ``label`` names
    the parameter behind ``path`` in messages.
    """
    src = source(fmt)
    url, md5 = url or src.url, md5 or src.md5
    cache = Path(cache_dir) if cache_dir is not None else None

    def from_zip(archive: Path) -> Path:
        if cache is None:
            raise RecrankerError(f"{archive}: no cache folder given to unpack the archive into")
        return extract_zip(archive, cache / archive.stem, src, is_complete)

    if path is not None:
        p = Path(path)
        if p.is_file() and p.suffix == ".zip":
            return from_zip(p)
        if not p.exists():
            raise RecrankerError(f"{label}: {p} does not exist")
        found = _find_complete(p, src, is_complete)
        if found is None:
            wanted = ", ".join(src.marker_files) or f"{fmt} data files"
            raise RecrankerError(f"{label}: {p} does not contain {wanted}")
        return found
    tried = []
    if data_root is not None:
        root = Path(data_root)
        for folder in src.folders:
            cand = root / folder
            if _complete(cand, src.marker_files, is_complete):
                return cand
            if (root / f"{folder}.zip").is_file():
                return from_zip(root / f"{folder}.zip")
            missing = [m for m in src.marker_files if not (cand / m).is_file()]
            tried.append(
                f"{cand} (no {', '.join(missing)})" if cand.is_dir() and missing else str(cand)
            )
    problem = src.how_to_get or "no download configured"
    if url and allow_download and cache is not None:
        created = next((p for p in [*reversed(cache.parents), cache] if not p.exists()), None)
        try:
            return from_zip(download(url, md5, cache / Path(url).name, fetch))
        except RecrankerError as exc:
            problem = str(exc)
            if created is not None and not any(p.is_file() for p in created.rglob("*")):
                shutil.rmtree(created, ignore_errors=True)  # no empty folders after a failure
    elif url and not allow_download:
        problem = "download disabled"
    where = f"looked in {', '.join(tried)}" if tried else "$RECRANKER_DATA not set"
    raise RecrankerError(
        f"{fmt}: raw files not found ({where}); {problem}; set {label} to the folder or archive, "
        f"or put the files in $RECRANKER_DATA/{src.folders[0]}"
    )
