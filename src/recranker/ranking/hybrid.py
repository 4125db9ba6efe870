"""RecRanker's hybrid ranking and the evaluation of every method over all test users.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from recranker.errors import RecrankerError

from .config import HybridWeights
from .tasks import pair_wins

# -- aggregation of predictions per user ------------------------------------------------------


def mean_scores_by_user(rows: Iterable[Mapping[str, Any]]) -> dict[int, dict[int, float]]:
    """user → item → mean score over every prediction row naming that item (position shifts,
    repeated instructions)."""
    acc: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        for item, s in zip(r["candidates"], r["scores"]):
            acc[int(r["user_id"])][int(item)].append(float(s))
    return {u: {i: float(np.mean(v)) for i, v in d.items()} for u, d in acc.items()}


# -- hybrid ranking ---------------------------------------------------------------------------

PAPER_WEIGHTS = HybridWeights()  # the RecRanker paper's C1-C3 and a1-a3


def utilities(
    candidates: Sequence[int],
    *,
    point: Mapping[int, float] | None = None,
    pair: Mapping[int, float] | None = None,
    list_pos: Mapping[int, int] | None = None,
    w: HybridWeights = PAPER_WEIGHTS,
    weights: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """U per candidate (in backbone order). A missing task contributes nothing.

    point: item → LLM rating s; U_point = s − m·C1 with m = backbone rank (1-based). An item
        the pointwise task did not score gets s = 0 (it sinks; it cannot happen with complete
        predictions).
    pair: item → number of (possibly fractional) pair wins, counted as ``w.pair_votes`` says by
        the caller; U_pair = wins·C2.
    list_pos: item → 1-based listwise position m'; U_list = −m'·C3.
    weights: (a1, a2, a3) overriding ``w`` (e.g. (1, 0, 0) for a single task).
    """
    a1, a2, a3 = weights if weights is not None else (w.a1, w.a2, w.a3)
    m = np.arange(1, len(candidates) + 1, dtype=np.float64)
    u = np.zeros(len(candidates))
    if point is not None:
        s = np.array([float(point.get(c, 0.0)) for c in candidates])
        u += a1 * (s - m * w.c1)
    if pair is not None:
        u += a2 * w.c2 * np.array([float(pair.get(c, 0.0)) for c in candidates])
    if list_pos is not None:
        worst = len(candidates)
        u += a3 * -w.c3 * np.array([float(list_pos.get(c, worst)) for c in candidates])
    return u


def rerank(candidates: Sequence[int], u: Sequence[float]) -> list[int]:
    """Candidates by decreasing utility; equal utilities keep the backbone order (stable)."""
    u = np.asarray(u, dtype=np.float64)
    if len(u) != len(candidates):
        raise RecrankerError(f"{len(u)} utilities for {len(candidates)} candidates")
    order = np.argsort(-u, kind="stable")
    return [int(candidates[i]) for i in order]


# -- evaluation -------------------------------------------------------------------------------


def list_positions(rows: Iterable[Mapping[str, Any]]) -> dict[int, dict[int, float]]:
    """Listwise predictions (scores = −position) → user → item → mean 1-based position m'."""
    return {u: {i: -s for i, s in d.items()} for u, d in mean_scores_by_user(rows).items()}


def users_with_target_in_candidates(candidates: Mapping[int, Sequence[int]], targets: Mapping[int, int]
                                    ) -> set[int]:
    """The users whose held-out item is among their candidates: the only ones whose HR@k / NDCG@k
    any re-ranking can change. Every other user is a miss for every method (``evaluate_rankings``
    counts them so whether or not they were ranked), so scoring their prompts changes no metric."""
    return {int(u) for u, item in targets.items() if int(item) in set(candidates.get(int(u), ()))}


def improvement(value: float, base: float) -> float | None:
    """Relative change in percent (None when the base is 0)."""
    return None if base == 0 else 100.0 * (value - base) / base


def evaluate_rankings(
    candidates: Mapping[int, Sequence[int]],
    targets: Mapping[int, int],
    predictions: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    w: HybridWeights = PAPER_WEIGHTS,
    ks: Sequence[int] = (3, 5),
) -> tuple[dict[str, Any], dict[str, dict[int, list[int]]]]:
    """Metrics of the backbone order, each task's re-ranking and the hybrid, over ALL test users.

    candidates: user → backbone top-k' (best first); a user without candidates, or whose test
    item is not among them, is a miss for every method. predictions: task → prediction rows.
    Returns (report, rankings) with rankings[method][user] the re-ranked list.
    """
    from recranker.metrics import rank_of, ranking_report

    users = sorted(int(u) for u in targets)
    k_prime = max((len(c) for c in candidates.values()), default=0)
    point = mean_scores_by_user(predictions["pointwise"]) if "pointwise" in predictions else None
    pair, pair_counts = (pair_wins(predictions["pairwise"], per_comparison=True, soft=w.pair_votes == "soft")
                         if "pairwise" in predictions else (None, None))
    lpos = list_positions(predictions["listwise"]) if "listwise" in predictions else None
    tasks = {"pointwise": (point, (1.0, 0.0, 0.0)), "pairwise": (pair, (0.0, 1.0, 0.0)),
             "listwise": (lpos, (0.0, 0.0, 1.0))}
    present = [t for t, (d, _) in tasks.items() if d is not None]

    def ranked(u: int, weights, use) -> list[int]:
        c = list(candidates.get(u, []))
        got = {t: tasks[t][0].get(u) for t in use}
        if not c or all(v is None for v in got.values()):
            return c
        u_vals = utilities(c, point=got.get("pointwise"), pair=got.get("pairwise"),
                           list_pos=got.get("listwise"), w=w, weights=weights)
        return rerank(c, u_vals)

    methods: dict[str, tuple] = {"backbone": ((0.0, 0.0, 0.0), [])}
    for t in present:
        methods[t] = (tasks[t][1], [t])
    if present:
        methods["hybrid"] = ((w.a1, w.a2, w.a3), present)
    rankings: dict[str, dict[int, list[int]]] = {}
    report: dict[str, Any] = {}
    tgt = np.array([int(targets[u]) for u in users])
    width = max(k_prime, 1)
    for name, (weights, use) in methods.items():
        lists = {u: ranked(u, weights, use) if use else list(candidates.get(u, [])) for u in users}
        rankings[name] = lists
        mat = np.full((len(users), width), -1, dtype=np.int64)
        for row, u in enumerate(users):
            mat[row, : len(lists[u])] = lists[u][:width]
        report[name] = ranking_report(rank_of(tgt, mat), ks) if users else {}
    base = report["backbone"]
    for name in methods:
        if name != "backbone":
            report[name]["improvement_%"] = {k: improvement(report[name][k], v) for k, v in base.items()
                                              if k in report[name]}
    in_cands = sum(int(targets[u]) in set(candidates.get(u, [])) for u in users)
    counts: dict[str, Any] = {
        "test_users": len(users),
        "users_with_candidates": sum(bool(candidates.get(u)) for u in users),
        "k_prime": k_prime,
        "test_item_in_candidates": in_cands,
    }
    for t in present:
        counts[f"{t}_users"] = sum(u in tasks[t][0] for u in users)
        counts[f"{t}_predictions"] = len(predictions[t])
    report["counts"] = counts
    report[f"candidate_recall@{k_prime}"] = in_cands / len(users) if users else 0.0
    if pair_counts is not None:
        both = pair_counts["pairs_with_both_orders"]
        report["pairwise_consistency"] = pair_counts["consistent_pairs"] / both if both else None
        counts.update({f"pairwise_{k}": v for k, v in pair_counts.items()})
    if "listwise" in predictions:
        rows = predictions["listwise"]
        gen = [r for r in rows if "parsed" in r]
        if gen:
            fails = sum(r["parsed"] < len(r["candidates"]) for r in gen)
            report["listwise_parse_failure_rate"] = fails / len(gen)
            counts["listwise_parse_failures"] = fails
    return report, rankings
