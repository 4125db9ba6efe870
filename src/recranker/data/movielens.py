"""MovieLens-100K and MovieLens-1M readers (GroupLens file formats).

ML-100K: ``u.data`` (``user<TAB>item<TAB>rating<TAB>timestamp``, ASCII) and ``u.item``
(Latin-1, ``|``-separated: id, title, release date, video release date, IMDb URL, then 19
genre flags in the order of ``u.genre``). ML-1M: ``ratings.dat``
(``UserID::MovieID::Rating::Timestamp``) and ``movies.dat`` (Latin-1,
``MovieID::Title (Year)::Genre|Genre``). Titles are kept exactly as published (with the year,
which is how RecRanker's prompts show them); ``year`` is parsed into its own column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recranker.errors import DataFormatError

from ._text import LINE, UNIX_TIME_RANGE, find_file, read_table, to_number
from .raw import RawData, ratings_frame

ML100K_GENRES = (  # the order of the 19 flags in u.item (= u.genre)
    "unknown|Action|Adventure|Animation|Children's|Comedy|Crime|Documentary|Drama|Fantasy|"
    "Film-Noir|Horror|Musical|Mystery|Romance|Sci-Fi|Thriller|War|Western"
).split("|")
ML_SCALE = (1.0, 5.0)
_YEAR_IN_TITLE = r"\((\d{4})\)\s*$"


def _require(folder: Path, name: str) -> Path:
    path = find_file(folder, [name])
    if path is None:
        raise DataFormatError(folder / name, None, "file not found")
    return path


def _ratings(path: Path, sep: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The ratings frame and each row's line in ``path``."""
    cols = ["user", "item", "rating", "timestamp"]
    df = read_table(path, sep=sep, encoding="ascii", columns=cols)
    user = to_number(path, df, "user", integer=True)
    item = to_number(path, df, "item", integer=True)
    rating = to_number(path, df, "rating", lo=ML_SCALE[0], hi=ML_SCALE[1])
    ts = to_number(path, df, "timestamp", integer=True, lo=UNIX_TIME_RANGE[0], hi=UNIX_TIME_RANGE[1])
    return ratings_frame(user, item, rating, ts), df[LINE].to_numpy()


def _check_items(ratings_path: Path, ratings: pd.DataFrame, rating_lines: np.ndarray,
                 items_path: Path, items: pd.DataFrame, item_lines: np.ndarray) -> None:
    """MovieLens lists every rated movie with a title: a rated id missing from the item file (or a
    line without a title) is a damaged copy, not an untitled movie; name the first such line."""
    untitled = (items["title"] == "").to_numpy()
    if untitled.any():
        line = int(item_lines[int(np.flatnonzero(untitled)[0])])
        raise DataFormatError(items_path, line, "item has no title")
    unknown = ~ratings["item"].isin(items["item"]).to_numpy()
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise DataFormatError(ratings_path, int(rating_lines[row]),
                              f"item {ratings['item'].iat[row]} is not in {items_path.name}")


def _year(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce").astype("Int64")


def read_ml100k(folder: str | Path) -> RawData:
    """Read ``u.data`` and ``u.item`` from ``folder``."""
    folder = Path(folder)
    ratings_path = _require(folder, "u.data")
    ratings, rating_lines = _ratings(ratings_path, "\t")
    path = _require(folder, "u.item")
    flags = [f"g{i}" for i in range(len(ML100K_GENRES))]
    cols = ["item", "title", "release", "video_release", "url", *flags]
    df = read_table(path, sep="|", encoding=("utf-8", "latin-1"), columns=cols, required=["item", *flags])
    item_ids = to_number(path, df, "item", integer=True)
    onehot = np.stack([to_number(path, df, f, integer=True, lo=0, hi=1) for f in flags], axis=1)
    names = np.array(ML100K_GENRES, dtype=object)
    genres = ["|".join(names[row.astype(bool)]) for row in onehot]  # 1.7K rows: metadata only
    year = df["release"].str.extract(r"(\d{4})\s*$", expand=False)
    year = year.fillna(df["title"].str.extract(_YEAR_IN_TITLE, expand=False))
    items = pd.DataFrame(
        {
            "item": item_ids,
            "title": df["title"].str.strip().to_numpy(),
            "year": _year(year).array,
            "genres": pd.Series(genres, dtype=str),
        }
    )
    _check_items(ratings_path, ratings, rating_lines, path, items, df[LINE].to_numpy())
    return RawData("ml-100k", ratings, items, ML_SCALE)


def read_ml1m(folder: str | Path) -> RawData:
    """Read ``ratings.dat`` and ``movies.dat`` from ``folder``."""
    folder = Path(folder)
    ratings_path = _require(folder, "ratings.dat")
    ratings, rating_lines = _ratings(ratings_path, "::")
    path = _require(folder, "movies.dat")
    df = read_table(path, sep="::", encoding=("utf-8", "latin-1"), columns=["item", "title", "genres"])
    item_ids = to_number(path, df, "item", integer=True)
    title = df["title"].str.strip()
    items = pd.DataFrame(
        {
            "item": item_ids,
            "title": title.to_numpy(),
            "year": _year(title.str.extract(_YEAR_IN_TITLE, expand=False)).array,
            "genres": df["genres"].str.strip().to_numpy(),
        }
    )
    _check_items(ratings_path, ratings, rating_lines, path, items, df[LINE].to_numpy())
    return RawData("ml-1m", ratings, items, ML_SCALE)
