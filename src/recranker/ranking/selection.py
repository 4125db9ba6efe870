"""Choosing the hybrid's weights on the validation split, and paired bootstrap intervals.

The hybrid (``hybrid.utilities``) has six knobs (C1–C3, a1–a3). The paper fixes them; on a
small model the right balance between the LLM's answers and the backbone's order is an empirical
question, so it is answered on the *validation* split (each user's valid item, candidates from
the backbone with train items masked, history before it) and the chosen weights are applied once
to the test split. Nothing here sees a test item.

Everything is vectorised over users × k' candidates (backbone order), so a grid of a thousand
weightings costs milliseconds; :func:`target_ranks` is exactly ``rank_of(rerank(utilities))``
(stable: equal utilities keep the backbone order), which a test checks.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import HybridWeights
from .hybrid import list_positions, mean_scores_by_user
from .tasks import pair_wins

METRICS = ("HR@3", "NDCG@3", "HR@5", "NDCG@5")


@dataclass(frozen=True)
class TaskArrays:
    """One split's task outputs over users × k' candidates in backbone order."""

    users: np.ndarray  # (n,)
    target_pos: np.ndarray  # (n,) 0-based index of the held-out item among the candidates; -1: absent
    valid: np.ndarray  # (n, k) False where a user has fewer than k' candidates
    point: np.ndarray | None  # expected rating (0 where not scored, as in ``utilities``)
    pair: np.ndarray | None  # pair wins from hard votes
    pair_soft: np.ndarray | None  # pair wins from soft votes (HybridWeights.pair_votes)
    list_pos: np.ndarray | None  # mean 1-based listwise position (k' where not placed)


def task_arrays(
    candidates: Mapping[int, Sequence[int]],
    targets: Mapping[int, int],
    predictions: Mapping[str, Sequence[Mapping[str, Any]]],
) -> TaskArrays:
    """Arrays of every user in ``targets`` from the per-task prediction rows."""
    users = np.array(sorted(int(u) for u in targets), dtype=np.int64)
    k = max((len(c) for c in candidates.values()), default=0)
    n = len(users)
    cand = np.full((n, k), -1, dtype=np.int64)
    for r, u in enumerate(users):
        c = list(candidates.get(int(u), []))
        cand[r, : len(c)] = c
    tgt = np.array([int(targets[int(u)]) for u in users], dtype=np.int64)
    hit = cand == tgt[:, None]
    target_pos = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)

    def grid(by_user: dict[int, dict[int, float]] | None, missing: float) -> np.ndarray | None:
        if by_user is None:
            return None
        out = np.full((n, k), missing, dtype=np.float64)
        for r, u in enumerate(users):
            d = by_user.get(int(u))
            if d:
                for j, i in enumerate(cand[r]):
                    if i >= 0 and int(i) in d:
                        out[r, j] = d[int(i)]
        return out

    point = mean_scores_by_user(predictions["pointwise"]) if "pointwise" in predictions else None
    pair = soft = None
    if "pairwise" in predictions:
        pair = pair_wins(predictions["pairwise"], per_comparison=True)[0]
        soft = pair_wins(predictions["pairwise"], per_comparison=True, soft=True)[0]
    lpos = list_positions(predictions["listwise"]) if "listwise" in predictions else None
    return TaskArrays(users, target_pos, cand >= 0, grid(point, 0.0), grid(pair, 0.0), grid(soft, 0.0),
                      grid(lpos, float(k)))


def target_ranks(arr: TaskArrays, w: HybridWeights, weights: tuple[float, float, float] | None = None
                 ) -> np.ndarray:
    """1-based rank of each user's held-out item after re-ranking (0: not among the candidates).

    A missing task contributes nothing, as in ``utilities``; ties keep the backbone order.
    """
    a1, a2, a3 = weights if weights is not None else (w.a1, w.a2, w.a3)
    n, k = arr.valid.shape
    m = np.arange(1, k + 1, dtype=np.float64)[None, :]
    u = np.zeros((n, k))
    if arr.point is not None and a1:
        u += a1 * (arr.point - m * w.c1)
    pair = arr.pair_soft if w.pair_votes == "soft" else arr.pair
    if pair is not None and a2:
        u += a2 * w.c2 * pair
    if arr.list_pos is not None and a3:
        u += a3 * -w.c3 * arr.list_pos
    u = np.where(arr.valid, u, -np.inf)
    has = arr.target_pos >= 0
    t = np.where(has, arr.target_pos, 0)
    ut = u[np.arange(n), t][:, None]
    before = np.arange(k)[None, :] < t[:, None]
    rank = 1 + (u > ut).sum(axis=1) + ((u == ut) & before).sum(axis=1)
    return np.where(has, rank, 0)


def per_user_metrics(ranks: np.ndarray, ks: Sequence[int] = (3, 5)) -> dict[str, np.ndarray]:
    """Per-user HR@k and NDCG@k (one relevant item; rank 0 = miss)."""
    r = np.asarray(ranks, dtype=np.float64)
    inside = lambda kk: (r >= 1) & (r <= kk)
    out = {}
    for kk in ks:
        out[f"HR@{kk}"] = inside(kk).astype(np.float64)
        out[f"NDCG@{kk}"] = np.where(inside(kk), 1.0 / np.log2(np.maximum(r, 1) + 1.0), 0.0)
    return out


def objective(ranks: np.ndarray, ks: Sequence[int] = (3, 5)) -> float:
    """What validation maximises: the mean of HR@k and NDCG@k over ``ks`` (all four targets)."""
    pm = per_user_metrics(ranks, ks)
    return float(np.mean([v.mean() for v in pm.values()])) if len(ranks) else 0.0


def weight_grid(
    a_step: float = 0.25,
    c1: Sequence[float] = (0.0, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0),
    c2: Sequence[float] = (0.25, 0.5, 1.0),
    c3: Sequence[float] = (0.0125, 0.025, 0.05, 0.1),
    pair_votes: Sequence[str] = ("hard", "soft"),
) -> list[HybridWeights]:
    """The paper's weights first (they win ties), then a1..a3 on a simplex of step ``a_step``
    crossed with the C values and the pairwise vote read-outs; weightings that cannot differ (a
    task weighted 0 ignores its C, a2 = 0 ignores the votes) appear once."""
    n = round(1 / a_step)
    simplex = [(i / n, j / n, (n - i - j) / n) for i in range(n + 1) for j in range(n + 1 - i)]
    seen, out = set(), [HybridWeights()]
    for (a1, a2, a3), x1, x2, x3, votes in itertools.product(simplex, c1, c2, c3, pair_votes):
        key = (a1, a2, a3, x1 if a1 else None, x2 if a2 else None, x3 if a3 else None, votes if a2 else None)
        if key not in seen:
            seen.add(key)
            out.append(HybridWeights(c1=x1, c2=x2, c3=x3, a1=a1, a2=a2, a3=a3, pair_votes=votes))
    return out


def select_weights(arr: TaskArrays, grid: Sequence[HybridWeights], ks: Sequence[int] = (3, 5)
                   ) -> tuple[HybridWeights, dict[str, Any]]:
    """The grid point with the best validation objective (first one on ties) and a summary."""
    scores = np.array([objective(target_ranks(arr, w), ks) for w in grid])
    best = int(np.argmax(scores))
    paper = objective(target_ranks(arr, HybridWeights()), ks)
    return grid[best], {
        "weights": grid[best].model_dump(),
        "valid_objective": float(scores[best]),
        "valid_objective_paper_weights": paper,
        "valid_objective_backbone": objective(target_ranks(arr, HybridWeights(), (0.0, 0.0, 0.0)), ks),
        "grid_size": len(grid),
        "valid_users": len(arr.users),
        "valid_users_item_in_candidates": int((arr.target_pos >= 0).sum()),
    }


def paired_bootstrap(base: Mapping[str, np.ndarray], method: Mapping[str, np.ndarray],
                     n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, dict[str, Any]]:
    """Per metric: the method's change over the base, absolute and in %, each with a percentile
    interval from resampling the *same* users for both (paired), ``n_boot`` times."""
    rng = np.random.default_rng([seed & 0xFFFFFFFF, 31])
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    out: dict[str, dict[str, Any]] = {}
    names = [m for m in base if m in method]
    n = len(next(iter(base.values()))) if base else 0
    if n == 0:
        return {m: {"delta": None, "delta_ci95": None, "improvement_%": None, "improvement_ci95_%": None}
                for m in names}
    idx = rng.integers(0, n, size=(n_boot, n))
    for m in names:
        b, x = np.asarray(base[m], dtype=np.float64), np.asarray(method[m], dtype=np.float64)
        bb, xx = b[idx].mean(axis=1), x[idx].mean(axis=1)
        d = xx - bb
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(bb > 0, 100.0 * d / bb, np.nan)
        rel = rel[np.isfinite(rel)]
        out[m] = {
            "delta": float(x.mean() - b.mean()),
            "delta_ci95": [float(np.percentile(d, lo_q)), float(np.percentile(d, hi_q))],
            "improvement_%": float(100.0 * (x.mean() - b.mean()) / b.mean()) if b.mean() > 0 else None,
            "improvement_ci95_%": ([float(np.percentile(rel, lo_q)), float(np.percentile(rel, hi_q))]
                                   if rel.size else None),
        }
    return out
