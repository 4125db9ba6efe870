"""Top-k ranking metrics with a single relevant item (leave-one-out), and AUC.

``ranks`` are 1-based positions of the ground-truth item in a ranked list; a user whose item is
absent from the list has rank ``0`` (or any value < 1) and counts as a miss — every user stays in
the denominator.
"""

from __future__ import annotations

import numpy as np


def _ranks(ranks) -> np.ndarray:
    r = np.asarray(ranks, dtype=np.float64)
    return np.where(r >= 1, r, np.inf)


def hit_ratio(ranks, k: int) -> float:
    """Share of users whose item is within the top k."""
    r = _ranks(ranks)
    return float(np.mean(r <= k)) if r.size else 0.0


def ndcg(ranks, k: int) -> float:
    """NDCG@k with one relevant item: 1/log2(rank+1) inside the top k, else 0 (IDCG = 1)."""
    r = _ranks(ranks)
    if not r.size:
        return 0.0
    gains = np.where(r <= k, 1.0 / np.log2(np.minimum(r, 1e18) + 1.0), 0.0)
    return float(np.mean(gains))


def ranking_report(ranks, ks=(3, 5)) -> dict[str, float]:
    """``{"HR@3": ..., "NDCG@3": ..., ...}`` for every k."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"HR@{k}"] = hit_ratio(ranks, k)
        out[f"NDCG@{k}"] = ndcg(ranks, k)
    return out


def rank_of(targets: np.ndarray, ranked_items: np.ndarray) -> np.ndarray:
    """1-based position of ``targets[i]`` in row ``ranked_items[i]``; 0 when absent.

    ranked_items: int array [n_users, k] (pad with -1 for short lists).
    """
    targets = np.asarray(targets).reshape(-1, 1)
    hits = np.asarray(ranked_items) == targets
    found = hits.any(axis=1)
    return np.where(found, hits.argmax(axis=1) + 1, 0)


def auc(labels, scores) -> float:
    """ROC-AUC (positives vs negatives); sklearn's implementation."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(labels), np.asarray(scores)))
