"""One entry point over the raw formats (four native ones and RecBole atomic files)."""

from __future__ import annotations

from pathlib import Path

from recranker.io import atomic_path

from .amazon import find_files, read_amazon
from .bookcrossing import BOOKS_FILE, RATINGS_FILE, read_bookcrossing
from .movielens import read_ml1m, read_ml100k
from .raw import RawData
from .recbole import find_atomic, read_recbole
from .sources import FORMATS, locate, source


def read_raw(
    fmt: str,
    folder: str | Path,
    *,
    include_implicit: bool = False,
    seed: int = 0,
    category: str | None = None,
    rating_scale: tuple[float, float] | None = None,
) -> RawData:
    """Read the raw files of format ``fmt`` from ``folder``.

    ``include_implicit`` and ``seed`` apply to BookCrossing (implicit 0-ratings; the seed of the
    reconstructed order), ``category`` to Amazon (which category's files to read),
    ``rating_scale`` to RecBole atomic files (their ratings are checked against it).
    """
    source(fmt)  # unknown format → one-line error listing the known ones
    if fmt == "ml-100k":
        return read_ml100k(folder)
    if fmt == "ml-1m":
        return read_ml1m(folder)
    if fmt == "bookcrossing":
        return read_bookcrossing(folder, include_implicit=include_implicit, seed=seed)
    if fmt == "recbole":
        return read_recbole(folder, **({"rating_scale": rating_scale} if rating_scale else {}))
    return read_amazon(folder, category=category)


def locate_raw(fmt: str, *, category: str | None = None, **kwargs) -> Path:
    """:func:`sources.locate` with the format's completeness test (Amazon: its category files)."""
    if fmt == "amazon":
        kwargs.setdefault("is_complete", lambda p: find_files(p, category) is not None)
    if fmt == "recbole":
        kwargs.setdefault("is_complete", lambda p: find_atomic(p) is not None)
    return locate(fmt, **kwargs)


def raw_files(fmt: str, folder: str | Path, *, category: str | None = None) -> list[Path]:
    """The files of ``folder`` that :func:`read_raw` reads for ``fmt`` (those that exist)."""
    source(fmt)
    folder = Path(folder)
    if fmt == "amazon":
        found = find_files(folder, category)  # (ratings file, kind, meta file or None)
        return [p for p in (found[0], found[2]) if p is not None] if found else []
    if fmt == "recbole":
        atomic = find_atomic(folder)  # (the .inter file, its .item file or None)
        return [p for p in atomic if p is not None] if atomic else []
    names = {"ml-100k": ("u.data", "u.item"), "ml-1m": ("ratings.dat", "movies.dat"),
             "bookcrossing": (RATINGS_FILE, BOOKS_FILE)}[fmt]
    return [folder / n for n in names if (folder / n).is_file()]


def snapshot_raw(fmt: str, folder: str | Path, dest: str | Path, *, category: str | None = None) -> bool:
    """Copy the raw files ``read_raw`` reads from ``folder`` into ``dest`` (one directory, replaced
    at once); return whether anything changed. Identical copies are left untouched, so a DVC
    stage reading ``dest`` re-runs only when the source's bytes changed."""
    import filecmp
    import shutil

    files = raw_files(fmt, folder, category=category)
    dest = Path(dest)
    same = dest.is_dir() and sorted(p.name for p in dest.iterdir()) == sorted(f.name for f in files) and all(
        filecmp.cmp(f, dest / f.name, shallow=False) for f in files)
    if same:
        return False
    with atomic_path(dest, is_dir=True) as tmp:
        for f in files:
            shutil.copyfile(f, tmp / f.name)
    return True


__all__ = ["FORMATS", "locate_raw", "raw_files", "read_raw", "snapshot_raw"]
