"""BookCrossing reader (``BX-Book-Ratings.csv`` + ``BX-Books.csv``; Ziegler et al., WWW 2005).

Both files are ``;``-separated, every field double-quoted, Latin-1, with a header line; titles
escape inner quotes as ``\\"``. Ratings are 1–10 (explicit) or 0 (implicit: the user interacted
with the book without rating it); implicit rows are dropped unless ``include_implicit``.

The dump has no timestamps. As in RecRanker, the order of each user's interactions is
reconstructed by a seeded random permutation: the permutation is drawn over *all* rows, so the
relative order of the explicit rows does not depend on whether implicit rows are kept, and it
becomes the ``timestamp`` (0..n-1) used by the leave-one-out split.
ISBNs are stripped and upper-cased on both sides (the dump mixes ``x``/``X`` check digits).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recranker.errors import DataFormatError

from ._text import find_file, read_table, to_number
from .raw import RawData, ratings_frame

RATINGS_FILE, BOOKS_FILE = "BX-Book-Ratings.csv", "BX-Books.csv"


def read_bookcrossing(
    folder: str | Path, *, include_implicit: bool = False, seed: int = 0
) -> RawData:
    """Read the BookCrossing dump in ``folder``; ``seed`` fixes the reconstructed order."""
    folder = Path(folder)
    path = find_file(folder, [RATINGS_FILE])
    if path is None:
        raise DataFormatError(folder / RATINGS_FILE, None, "file not found")
    df = read_table(
        path,
        sep=";",
        encoding="latin-1",
        header=True,
        quoted=True,
        required=["User-ID", "ISBN", "Book-Rating"],
    )
    user = to_number(path, df, "User-ID", integer=True)
    rating = to_number(path, df, "Book-Rating", integer=True, lo=0, hi=10)
    isbn = df["ISBN"].str.strip().str.upper().to_numpy()
    order = np.random.default_rng(seed).permutation(len(df))
    keep = np.ones(len(df), dtype=bool) if include_implicit else rating > 0
    ratings = ratings_frame(user[keep], isbn[keep], rating[keep], order[keep])
    scale = (0.0 if include_implicit else 1.0, 10.0)
    return RawData("bookcrossing", ratings, _books(folder), scale, has_timestamps=False)


def _books(folder: Path) -> pd.DataFrame:
    path = find_file(folder, [BOOKS_FILE])
    if path is None:
        raise DataFormatError(folder / BOOKS_FILE, None, "file not found")
    df = read_table(
        path,
        sep=";",
        encoding="latin-1",
        header=True,
        quoted=True,
        required=["ISBN", "Book-Title"],
        nonempty=["ISBN"],
    )

    def text(col: str) -> np.ndarray:
        return df[col].str.strip().to_numpy() if col in df.columns else np.full(len(df), "")

    # Metadata only: an unparsable year is unknown (the dump uses 0 for that), not an error.
    year = pd.to_numeric(
        df.get("Year-Of-Publication", pd.Series("", index=df.index)), errors="coerce"
    )
    year = year.where(year > 0).astype("Int64")
    return pd.DataFrame(
        {
            "item": df["ISBN"].str.strip().str.upper().to_numpy(),
            "title": text("Book-Title"),
            "author": text("Book-Author"),
            "year": year.array,
            "publisher": text("Publisher"),
        }
    )
