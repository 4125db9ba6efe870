"""Biased matrix factorisation on explicit ratings, for pointwise rating hints.

Not a ranking backbone: the instructions stage calls :func:`fit_predict_ratings` once per
cross-fitting fold, so it must be quick (big shuffled mini-batches, vectorised) and must never
see the rows it predicts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from recranker.errors import RecrankerError

from .config import RatingMFConfig

_BATCH = 4096
_DAMPING = 5.0  # shrinkage of the initial user/item biases towards 0 (in pseudo-ratings)


def _ids(df: pd.DataFrame, what: str, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    for col in ("user_id", "item_id"):
        if col not in df.columns:
            raise RecrankerError(f"fit_predict_ratings: {what} has no '{col}' column")
    u = df["user_id"].to_numpy(np.int64)
    i = df["item_id"].to_numpy(np.int64)
    if len(u) and (u.min() < 0 or u.max() >= n_users or i.min() < 0 or i.max() >= n_items):
        raise RecrankerError(
            f"fit_predict_ratings: {what} ids outside n_users={n_users} / n_items={n_items}"
        )
    return u, i


def _damped_biases(u, i, r, mu, n_users, n_items) -> tuple[np.ndarray, np.ndarray]:
    """Shrunken mean deviations: item bias first, then user bias on the item residual."""
    cnt_i = np.bincount(i, minlength=n_items)
    b_i = np.bincount(i, weights=r - mu, minlength=n_items) / (cnt_i + _DAMPING)
    cnt_u = np.bincount(u, minlength=n_users)
    b_u = np.bincount(u, weights=r - mu - b_i[i], minlength=n_users) / (cnt_u + _DAMPING)
    return b_u, b_i


def fit_predict_ratings(
    train: pd.DataFrame,
    query: pd.DataFrame,
    n_users: int,
    n_items: int,
    config: RatingMFConfig | None = None,
    *,
    seed: int = 0,
    **overrides: Any,
) -> np.ndarray:
    """Fit r̂ = μ + b_u + b_i + p_u·q_i on ``train`` and predict the ``query`` rows.

    Biases start at damped means (so even a short fit beats the global mean), then everything
    is trained with Adam on shuffled mini-batches of 4096 ratings for ``epochs`` passes, with an
    L2 penalty ``weight_decay`` per rating on the factors and biases involved. Predictions are
    clipped to the range of ratings seen in ``train``. Returns float64 [len(query)].
    ``config`` (default :class:`RatingMFConfig`) holds the hyper-parameters; keyword
    ``overrides`` replace single fields of it (e.g. ``dim=4`` in tests).
    """
    import torch

    cfg = RatingMFConfig.model_validate({**(config or RatingMFConfig()).model_dump(), **overrides})
    dim, epochs, lr, weight_decay = cfg.dim, cfg.epochs, cfg.lr, cfg.weight_decay

    if "rating" not in train.columns:
        raise RecrankerError("fit_predict_ratings: train has no 'rating' column")
    if len(train) == 0:
        raise RecrankerError("fit_predict_ratings: train is empty")
    u, i = _ids(train, "train", n_users, n_items)
    qu, qi = _ids(query, "query", n_users, n_items)
    r = train["rating"].to_numpy(np.float64)
    lo, hi = float(r.min()), float(r.max())
    mu = float(r.mean())
    b_u0, b_i0 = _damped_biases(u, i, r, mu, n_users, n_items)

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    P = torch.nn.Parameter(torch.randn(n_users, dim, generator=gen) * 0.01)
    Q = torch.nn.Parameter(torch.randn(n_items, dim, generator=gen) * 0.01)
    bu = torch.nn.Parameter(torch.from_numpy(b_u0).float())
    bi = torch.nn.Parameter(torch.from_numpy(b_i0).float())
    opt = torch.optim.Adam([P, Q, bu, bi], lr=lr)
    tu, ti = torch.from_numpy(u.copy()), torch.from_numpy(i.copy())
    tr = torch.from_numpy(r - mu).float()
    for _ in range(epochs):
        perm = torch.randperm(len(tu), generator=gen)
        for a in range(0, len(perm), _BATCH):
            idx = perm[a : a + _BATCH]
            bu_, bi_, pu, qi_ = bu[tu[idx]], bi[ti[idx]], P[tu[idx]], Q[ti[idx]]
            pred = bu_ + bi_ + (pu * qi_).sum(1)
            penalty = P.pow(2).sum() + Q.pow(2).sum() + bu.pow(2).sum() + bi.pow(2).sum()
            loss = (pred - tr[idx]).pow(2).mean() + weight_decay * penalty
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        tqu, tqi = torch.from_numpy(qu.copy()), torch.from_numpy(qi.copy())
        out = mu + (bu[tqu] + bi[tqi] + (P[tqu] * Q[tqi]).sum(1)).double().numpy()
    return np.clip(out, lo, hi)
