"""The in-memory result of every reader: ratings in source order plus item text."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

RATING_COLUMNS = ["user", "item", "rating", "timestamp"]


@dataclass(frozen=True)
class RawData:
    """What a reader returns, before any filtering.

    ``ratings``: columns ``user``, ``item`` (original ids: int64 where the format's ids are
    integers, i.e. MovieLens, else strings), ``rating`` (float64),
    ``timestamp`` (int64), one row per source line, in source order — the order is the stable
    tie-break of the leave-one-out split. ``items``: ``item`` (original id, same dtype as in
    ``ratings``) and ``title`` plus
    per-source text columns; it may list items nobody rated and miss items that were rated.
    ``rating_scale`` is the documented (min, max) of the source's scale. ``has_timestamps`` is
    False when the order was reconstructed (BookCrossing), so downstream code can say so.
    """

    format: str
    ratings: pd.DataFrame
    items: pd.DataFrame
    rating_scale: tuple[float, float]
    has_timestamps: bool = True


def ratings_frame(user, item, rating, timestamp) -> pd.DataFrame:
    """Assemble the canonical ratings frame with the canonical dtypes.

    Integer ids (MovieLens) stay int64 — cheaper than a million int→str conversions, and they
    sort numerically; any other ids become strings.
    """

    def ids(values) -> pd.Series:
        arr = np.asarray(values)
        if np.issubdtype(arr.dtype, np.integer):
            return pd.Series(arr.astype(np.int64))
        return pd.Series(arr, dtype=str)

    return pd.DataFrame(
        {
            "user": ids(user),
            "item": ids(item),
            "rating": np.asarray(rating, dtype=np.float64),
            "timestamp": np.asarray(timestamp, dtype=np.int64),
        }
    )
