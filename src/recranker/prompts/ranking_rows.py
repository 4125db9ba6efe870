"""Ranking instructions (test, or valid for choosing the hybrid's weights) of the three RecRanker tasks.

Position shifting at inference (``n_test_permutations`` seeded shown orders per user, off =
the backbone's order once) and how answers are aggregated over them: pointwise does not depend
on the order (asked once); pairwise votes per unordered pair over every shown order (an order
that picks the other item cancels it: see ``recranker.ranking.tasks.pair_wins``, so an answer
that follows the position rather than the movie adds nothing); listwise takes each item's mean
position over the permutations.

Test (every user with test candidates, every permutation): candidates = the backbone's top-k'
for ``split=test``; history = latest train + valid items; ``label`` = the user's test item id
for every task (the evaluator ranks the candidates by the predicted scores and looks it up).

* pointwise: one prompt per candidate (only in permutation 0 unless the history is shuffled,
  since it does not depend on candidate order);
* pairwise: pairs adjacent in the backbone ranking (``pairwise_test_pairs="adjacent"``, k'−1
  prompts) or all pairs; A is whichever of the two comes first in the permutation's shown order
  (``pairwise_both_orders`` adds the swapped prompt);
* listwise: one prompt with all candidates in the permutation's shown order.

``meta`` of a test row: ``perm`` (permutation index), ``ranks`` (backbone rank of each shown
candidate), ``hint`` (hint values or null), ``history`` (item ids shown), ``target_in_candidates``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recranker.errors import RecrankerError
from recranker.tasks import TASKS

from . import templates as T
from .config import InstructConfig
from .corpus import Corpus
from .layout import history_prefix, rounded, score_order, share
from .shifting import test_candidate_order, test_history_order


def _pairs(k: int, mode: str) -> list[tuple[int, int]]:
    if mode == "adjacent":
        return [(i, i + 1) for i in range(k - 1)]
    if mode == "all":
        return [(i, j) for i in range(k) for j in range(i + 1, k)]
    raise RecrankerError(f"instruct.pairwise_test_pairs: unknown mode '{mode}'")


@dataclass(frozen=True)
class _TestPrompt:
    """What all test rows of one (user, permutation) share; :meth:`row` adds the task part."""

    base: dict
    rid: str
    system: str
    prefix: str
    items: np.ndarray
    ranks: np.ndarray
    common: dict

    def row(self, task: str, j: int, idx, suffix: str, hint) -> dict:
        return {**self.base, "id": f"{self.rid}/{task}/{j}", "task": task,
                "messages": T.messages(self.system, self.prefix, suffix),
                "candidates": [int(self.items[i]) for i in idx],
                "meta": {**self.common, "ranks": [int(self.ranks[i]) for i in idx], "hint": hint}}


def build_test(
    corpus: Corpus,
    candidates: pd.DataFrame,
    backbone: str,
    cfg: InstructConfig,
    seed: int,
    split: str = "test",
    users: set[int] | None = None,
) -> Iterator[dict]:
    """Ranking rows for every user with ``split`` candidates of one backbone (``split`` is
    ``test``, or ``valid`` for choosing the hybrid's weights: the valid item is the label, the
    history stops before it, the candidates are the backbone's with train items masked).
    ``users``: only these users (None: all).

    ``candidates``: user_id, split, rank, item_id, score (candidates.parquet); with
    ``cfg.enhance`` also ``rating_pred`` (the rating model fitted on ``split=train`` only, see
    :func:`recranker.prompts.enhance.train_only_predict`).
    """
    need = ["user_id", "split", "rank", "item_id", "score"]
    if cfg.enhance:
        need.append("rating_pred")
    missing = [c for c in need if c not in candidates.columns]
    if missing:
        raise RecrankerError(f"candidates ({backbone}): missing column '{missing[0]}'")
    cand = candidates.loc[candidates["split"] == split].sort_values(["user_id", "rank"], kind="stable")
    if users is not None:
        cand = cand.loc[cand["user_id"].isin(users)]
    targets = corpus.target_item(split)
    ctx = corpus.ctx
    system = T.system_text(ctx.domain)
    rank_col = "score" if cfg.test_rank_hint == "backbone" else "rating_pred"
    for u, grp in cand.groupby("user_id", sort=True):
        u = int(u)
        if u not in targets:
            raise RecrankerError(f"candidates ({backbone}): user {u} has no {split} interaction")
        target = int(targets[u])
        items = grp["item_id"].to_numpy(np.int64)
        ranks = grp["rank"].to_numpy(np.int64)
        k = len(items)
        if k > 26 and "listwise" in cfg.tasks:
            raise RecrankerError(f"candidates ({backbone}): {k} candidates, listwise allows 26")
        rank_scores = grp[rank_col].to_numpy(np.float64) if cfg.enhance else None
        rating_pred = grp["rating_pred"].to_numpy(np.float64) if cfg.enhance else None
        hist = corpus.history_rows(u, split).tail(cfg.history_len)
        # Without position shifting every permutation would be the backbone order: show it once.
        for perm in range(cfg.n_test_permutations if cfg.shuffle_candidates else 1):
            ho = test_history_order(seed, u, perm, len(hist), cfg.shuffle_history)
            h_items = hist["item_id"].to_numpy()[ho].tolist()
            prefix = history_prefix(corpus, cfg, h_items, hist["rating"].to_numpy(np.float64)[ho].tolist())
            shown = test_candidate_order(seed, u, perm, k, cfg.shuffle_candidates)
            pos = np.empty(k, dtype=np.int64)
            pos[shown] = np.arange(k)
            prompt = _TestPrompt(
                base={"dataset": ctx.name, "user_id": u, "backbone": backbone, "label": target},
                rid=f"{ctx.name}/{backbone}/{'' if split == 'test' else split + '/'}u{u}/p{perm}",
                system=system, prefix=prefix,
                items=items, ranks=ranks,
                common={"perm": perm, "history": [int(i) for i in h_items],
                        "prefix_chars": len(prefix), "target_in_candidates": bool(target in items)},
            )  # fmt: skip
            row = prompt.row
            if "pointwise" in cfg.tasks and (perm == 0 or cfg.shuffle_history):
                for j, i in enumerate(shown):
                    hv = ctx.scale.show(rating_pred[i]) if cfg.enhance else None
                    suffix = T.pointwise_suffix(corpus.titles[items[i]], ctx.scale, ctx.domain, hv)
                    yield row("pointwise", j, [i], suffix, rounded([rating_pred[i]]) if cfg.enhance else None)
            if "pairwise" in cfg.tasks:
                j = 0
                for a, b in _pairs(k, cfg.pairwise_test_pairs):
                    first, second = (a, b) if pos[a] < pos[b] else (b, a)
                    orders = [(first, second), (second, first)] if cfg.pairwise_both_orders else [(first, second)]
                    for x, y in orders:
                        hint = bool(rank_scores[x] > rank_scores[y]) if cfg.enhance else None
                        suffix = T.pairwise_suffix(corpus.titles[items[x]], corpus.titles[items[y]],
                                                   ctx.domain, hint)
                        yield row("pairwise", j, [x, y], suffix,
                                  rounded([rank_scores[x], rank_scores[y]]) if cfg.enhance else None)
                        j += 1
            if "listwise" in cfg.tasks:
                titles = [corpus.titles[items[i]] for i in shown]
                hint_order = score_order(rank_scores[shown]) if cfg.enhance else None
                suffix = T.listwise_suffix(titles, ctx.domain, hint_order)
                yield row("listwise", 0, shown.tolist(), suffix,
                          rounded(rank_scores[shown]) if cfg.enhance else None)


def valid_users(corpus: Corpus, candidates: pd.DataFrame, n: int, seed: int) -> set[int]:
    """The users whose valid item is among their ``split=valid`` candidates — the only ones whose
    validation metrics any re-ranking can change — or a seeded subset of ``n`` of them (0: all)."""
    from recranker.data import test_user_subset

    c = candidates.loc[candidates["split"] == "valid", ["user_id", "item_id"]]
    target = c["user_id"].map(corpus.valid_item)
    hit = c.loc[c["item_id"].to_numpy() == target.to_numpy(), "user_id"]
    return set(test_user_subset(hit, n, seed).tolist()) if len(hit) else set()


def test_stats(rows: Sequence[dict]) -> dict:
    per_task = Counter(r["task"] for r in rows)
    users = {r["user_id"] for r in rows}
    hit = {r["user_id"]: r["meta"]["target_in_candidates"] for r in rows}
    return {
        "rows": len(rows),
        "per_task": {t: per_task.get(t, 0) for t in TASKS},
        "users": len(users),
        "hint_coverage": (sum(r["meta"]["hint"] is not None for r in rows) / len(rows)) if rows else 0.0,
        "target_in_candidates": share(hit.values()),
    }
