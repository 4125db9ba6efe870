"""One entry point over the raw formats (four native ones and RecBole atomic files)."""

from __future__ import annotations

from pathlib import Path

from .amazon import find_files, read_amazon
from .bookcrossing import read_bookcrossing
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


__all__ = ["FORMATS", "locate_raw", "read_raw"]
