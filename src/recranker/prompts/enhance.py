"""Prompt enhancement without leakage: cross-fitted training hints, train-only test hints.

A hint is a conventional model's opinion shown in the prompt (RecRanker §3.2.2). At test time
it comes from models fitted on ``split=train`` only, so it is as good as such a model can be on
unseen data. A training hint from a model fitted on *all* training rows would have seen that
instruction's own target (its rating is the answer) and be far more accurate than any test
hint: the LLM would learn to copy hints. So training hints are **cross-fitted**:

* every training row of a user gets one of ``F`` folds (:func:`assign_folds`; balanced per user
  and per preference level, so each fold holds some of the user's liked and disliked items);
* each training instruction picks one fold ``f`` and takes *all* its rated candidates from that
  fold; every hint of the instruction (the rated candidates and the never-interacted ones)
  comes from the one model fitted on the rows outside fold ``f`` (:func:`crossfit_predict`).

No hint of an instruction was therefore computed from any label of that instruction, and the
hints are out-of-sample predictions, as accurate as test hints. The same cross-fitted
rating-model scores serve the pairwise and listwise training hints ("which scores higher",
"the model's order"): that model is the only one that can be re-fitted per fold cheaply and
without the data needed to be ranking-trained; at test time those hints come from the backbone's
own candidate scores (or, optionally, the train-only rating model, for identical hint sources).

``fit_predict(train_df, query_df) -> np.ndarray`` is any callable fitted on ``train_df``
(user_id, item_id, rating) that returns one score per ``query_df`` row (user_id, item_id);
the stage passes the rating MF of :mod:`recranker.backbones.rating_mf`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from recranker.errors import RecrankerError

from .shifting import FOLDS, rng_for

FitPredict = Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]


def preference_level(ratings: np.ndarray, like: float, dislike: float) -> np.ndarray:
    """2 = liked (≥ like), 0 = disliked (≤ dislike), 1 = in between (neutral)."""
    r = np.asarray(ratings, dtype=np.float64)
    return np.where(r >= like, 2, np.where(r <= dislike, 0, 1)).astype(np.int8)


def assign_folds(
    users: np.ndarray, levels: np.ndarray, n_folds: int, seed: int
) -> np.ndarray:
    """A fold in ``[0, n_folds)`` for every training row, balanced within (user, level).

    Rows are grouped by user and level, shuffled per user (seeded by user), and dealt out
    round-robin from a random starting fold, so every fold gets ⌊n/F⌋ or ⌈n/F⌉ of each group.
    """
    if n_folds < 2:
        raise RecrankerError(f"instruct.n_folds: cross-fitting needs at least 2 folds, got {n_folds}")
    users = np.asarray(users, dtype=np.int64)
    levels = np.asarray(levels, dtype=np.int64)
    folds = np.empty(len(users), dtype=np.int64)
    order = np.lexsort((levels, users))  # stable: by user, then level, then row order
    bounds = np.flatnonzero(np.diff(users[order])) + 1
    for rows in np.split(order, bounds):
        if not len(rows):
            continue
        rng = rng_for(seed, FOLDS, int(users[rows[0]]))
        start = int(rng.integers(n_folds))
        shuffled = np.concatenate(
            [rng.permutation(rows[levels[rows] == lv]) for lv in np.unique(levels[rows])]
        )
        folds[shuffled] = (start + np.arange(len(shuffled))) % n_folds
    return folds


def crossfit_predict(
    train: pd.DataFrame,
    folds: np.ndarray,
    queries: pd.DataFrame,
    fit_predict: FitPredict,
    n_folds: int,
) -> np.ndarray:
    """Score each query (user_id, item_id, fold) with the model fitted outside its fold."""
    folds = np.asarray(folds)
    if len(folds) != len(train):
        raise RecrankerError("crossfit_predict: one fold per training row is required")
    out = np.full(len(queries), np.nan)
    qf = queries["fold"].to_numpy()
    for f in range(n_folds):
        sel = np.flatnonzero(qf == f)
        if not len(sel):
            continue
        fit_rows = train.loc[folds != f, ["user_id", "item_id", "rating"]].reset_index(drop=True)
        q = queries.iloc[sel][["user_id", "item_id"]].reset_index(drop=True)
        pred = np.asarray(fit_predict(fit_rows, q), dtype=np.float64)
        if pred.shape != (len(sel),):
            raise RecrankerError(f"fit_predict returned shape {pred.shape}, expected ({len(sel)},)")
        out[sel] = pred
    return out


def train_only_predict(
    interactions: pd.DataFrame, queries: pd.DataFrame, fit_predict: FitPredict
) -> np.ndarray:
    """Test hints: fit on ``split == "train"`` rows only, score ``queries`` (user_id, item_id)."""
    train = interactions.loc[interactions["split"] == "train", ["user_id", "item_id", "rating"]]
    q = queries[["user_id", "item_id"]].reset_index(drop=True)
    pred = np.asarray(fit_predict(train.reset_index(drop=True), q), dtype=np.float64)
    if pred.shape != (len(q),):
        raise RecrankerError(f"fit_predict returned shape {pred.shape}, expected ({len(q)},)")
    return pred
