"""Cleaning before the split: duplicate ratings and the iterative k-core."""

from __future__ import annotations

import numpy as np
import pandas as pd


def drop_duplicates(ratings: pd.DataFrame) -> pd.DataFrame:
    """Keep one row per (user, item): the most recent one (latest timestamp, then source row).

    MovieLens has no duplicates; Amazon dumps do. Keeping the latest rating keeps the user's
    current opinion, and a single row per pair guarantees that a test item never also appears
    in the same user's training history.
    """
    order = np.lexsort((np.arange(len(ratings)), ratings["timestamp"].to_numpy()))
    latest = ratings.iloc[order].drop_duplicates(["user", "item"], keep="last")
    return ratings.loc[np.sort(latest.index.to_numpy())]


def kcore(
    ratings: pd.DataFrame,
    user_min: int,
    item_min: int,
    *,
    user_col: str = "user",
    item_col: str = "item",
) -> pd.DataFrame:
    """Largest subset where every user has ≥ ``user_min`` and every item ≥ ``item_min`` rows.

    Removing a sparse item can push a user below the bound and vice versa, so both filters are
    repeated until nothing changes (the fixed point is unique: it is the maximal such subset).
    Row order is preserved. A bound of 0 or 1 filters nothing on that side.
    """
    users = pd.factorize(ratings[user_col])[0]
    items = pd.factorize(ratings[item_col])[0]
    keep = np.ones(len(ratings), dtype=bool)
    while True:
        n_user = np.bincount(users[keep], minlength=users.max(initial=-1) + 1)
        n_item = np.bincount(items[keep], minlength=items.max(initial=-1) + 1)
        new = keep & (n_user[users] >= user_min) & (n_item[items] >= item_min)
        if new.sum() == keep.sum():
            return ratings.loc[keep]
        keep = new


def is_kcore(
    ratings: pd.DataFrame,
    user_min: int,
    item_min: int,
    *,
    user_col: str = "user",
    item_col: str = "item",
) -> bool:
    """True when every user/item of ``ratings`` meets its bound (the k-core property)."""
    return bool(
        (ratings[user_col].value_counts() >= user_min).all()
        and (ratings[item_col].value_counts() >= item_min).all()
    )
