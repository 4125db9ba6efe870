"""Contiguous id encoding and the leave-one-out split by time."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recranker.errors import RecrankerError

SPLITS = ("train", "valid", "test")


def sorted_originals(values: pd.Series) -> np.ndarray:
    """Unique original ids, ordered numerically if they are integers (or all-digit strings),
    else as strings.

    Sorting by the original id (not by first appearance) makes the encoding independent of
    file order, so two copies of a dataset with shuffled lines get the same ids.
    """
    uniq = pd.unique(values)
    if np.issubdtype(np.asarray(uniq).dtype, np.integer):
        return np.sort(np.asarray(uniq))
    uniq = np.asarray(uniq, dtype=object)
    as_int = pd.to_numeric(pd.Series(uniq), errors="coerce")
    if as_int.notna().all() and (as_int == as_int.round()).all():
        order = np.argsort(as_int.to_numpy(), kind="stable")
    else:
        order = np.argsort(uniq.astype(str), kind="stable")
    return uniq[order]


def encode_ids(ratings: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replace ``user``/``item`` by contiguous ``user_id``/``item_id`` (0..n-1).

    Returns the re-indexed frame and the id map (``kind`` ∈ {user, item}, ``id``, ``original``
    as a string).
    """
    out = ratings.drop(columns=["user", "item"]).copy()
    maps = []
    for pos, kind in enumerate(("user", "item")):
        originals = sorted_originals(ratings[kind])
        codes = pd.Index(originals).get_indexer(ratings[kind]).astype(np.int64)
        out.insert(pos, f"{kind}_id", codes)
        maps.append(
            pd.DataFrame(
                {
                    "kind": pd.Series([kind] * len(originals), dtype=str),
                    "id": np.arange(len(originals), dtype=np.int64),
                    "original": pd.Series(originals).astype(str),
                }
            )
        )
    return out, pd.concat(maps, ignore_index=True)


def leave_one_out(ratings: pd.DataFrame, *, order: str | None = None) -> pd.DataFrame:
    """Label each user's last interaction ``test``, second-last ``valid``, the rest ``train``.

    Rows are sorted by ``user_id``, then ``timestamp``, then ``order`` (the source row number;
    default: the current row order), so ties in time keep the file's order. Every user needs
    at least 3 interactions (one each for train, valid and test).
    """
    tie = ratings[order].to_numpy() if order else np.arange(len(ratings))
    perm = np.lexsort((tie, ratings["timestamp"].to_numpy(), ratings["user_id"].to_numpy()))
    df = ratings.iloc[perm].reset_index(drop=True)
    counts = df.groupby("user_id", sort=False)["user_id"].transform("size").to_numpy()
    if (counts < 3).any():
        user = df["user_id"].iat[int(np.flatnonzero(counts < 3)[0])]
        raise RecrankerError(f"leave_one_out: user {user} has fewer than 3 interactions")
    from_end = df.groupby("user_id", sort=False).cumcount(ascending=False).to_numpy()
    df["split"] = pd.Series(
        np.where(from_end == 0, "test", np.where(from_end == 1, "valid", "train")), dtype=str
    )
    return df


def test_user_subset(users, n: int, seed: int) -> np.ndarray:
    """``n`` test users drawn without replacement (seeded), sorted; every user when ``n`` is 0
    or not smaller than their number. Cheap CPU experiments rank and evaluate only these, and
    both sides must draw the same ones, hence one function."""
    users = np.unique(np.asarray(users, dtype=np.int64))
    if n <= 0 or n >= len(users):
        return users
    return np.sort(np.random.default_rng([seed & 0xFFFFFFFF, 97]).choice(users, size=n, replace=False))
