"""Full ranking over all items: masked top-k, leave-one-out metrics, the candidates table.

Scores come from :meth:`Backbone.scorer` in user batches; the items a user may not be offered
(train items; plus the valid item at test time) are set to -inf before ``topk``. Ties are broken
by ``torch.topk``'s deterministic CPU order, so the same scores give the same lists.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recranker.metrics import rank_of, ranking_report

from .data import SPLITS, Interactions

METRIC_KS = (3, 5, 10, 20)


def masked_topk(
    model, data: Interactions, split: str, k: int, batch_size: int = 1024, users=None
) -> tuple[np.ndarray, np.ndarray]:
    """(items int64 [n, k], scores float32 [n, k]) for ``users`` (default: all), seen items masked."""
    import torch

    users = np.arange(data.n_users) if users is None else np.asarray(users, dtype=np.int64)
    k = min(k, data.n_items)
    seen = data.seen(split)[users]
    out_items = np.empty((len(users), k), dtype=np.int64)
    out_scores = np.empty((len(users), k), dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        score = model.scorer(data, split)
        for a in range(0, len(users), batch_size):
            b = min(a + batch_size, len(users))
            s = score(torch.from_numpy(users[a:b])).float().clone()
            ptr = seen.indptr
            rows = np.repeat(np.arange(b - a), np.diff(ptr[a : b + 1]))
            cols = seen.indices[ptr[a] : ptr[b]]
            s[torch.from_numpy(rows), torch.from_numpy(cols.astype(np.int64))] = -torch.inf
            val, idx = torch.topk(s, k, dim=1)
            out_items[a:b], out_scores[a:b] = idx.numpy(), val.numpy()
    model.train(was_training)
    return out_items, out_scores


def evaluate(
    model, data: Interactions, split: str, ks=METRIC_KS, batch_size: int = 1024
) -> dict[str, float]:
    """HR@k / NDCG@k over every user that has a ``split`` item (full ranking)."""
    items, _ = masked_topk(model, data, split, max(ks), batch_size)
    targets = data.targets(split)
    has = targets >= 0
    return ranking_report(rank_of(targets[has], items[has]), ks=ks)


def candidates_frame(model, data: Interactions, k: int, batch_size: int = 1024) -> pd.DataFrame:
    """Top-k per user for valid and test (CONTRACTS.md ``candidates.parquet``), every user."""
    frames = []
    for split in SPLITS:
        items, scores = masked_topk(model, data, split, k, batch_size)
        n, kk = items.shape
        frames.append(
            pd.DataFrame(
                {
                    "user_id": np.repeat(np.arange(n, dtype=np.int64), kk),
                    "split": split,
                    "rank": np.tile(np.arange(1, kk + 1, dtype=np.int64), n),
                    "item_id": items.reshape(-1),
                    "score": scores.reshape(-1).astype(np.float64),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
