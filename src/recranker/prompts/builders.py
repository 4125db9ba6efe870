"""Training and test instructions of the three RecRanker tasks (one JSON object each).

Training (one instruction per occurrence of a sampled user, task and repeat):

* candidates come from negative sampling on ``split=train`` rows: liked (rating ≥ like),
  disliked (≤ dislike) and never-interacted items, preferred in that order
  (liked > never-interacted > disliked); neutral ratings are only pointwise targets;
* pointwise: one rated item, answer = its rating (one digit, :class:`RatingScale`);
* pairwise: two items of different levels, answer ``Yes`` iff A is preferred;
* listwise: ``listwise_liked`` liked + ``listwise_disliked`` disliked + never-interacted items
  up to ``listwise_size``; answer = the order by (level, rating); ties (e.g. the
  never-interacted items) are ordered by a seeded random key drawn per *item*, independently of
  the shown order, so the answer never teaches "copy the prompt's order";
* the rated candidates all come from one cross-fitting fold (see :mod:`.enhance`); the history
  is the user's latest training items *other than the candidates*;
* position shifting: candidates shown in random order (``shuffle_candidates``; off = sorted by
  item id, a fixed order unrelated to preference), history shuffled if ``shuffle_history``.

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
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from recranker.errors import RecrankerError
from recranker.tasks import TASKS

from . import templates as T
from .corpus import Corpus
from .enhance import FitPredict, crossfit_predict
from .shifting import TRAIN, rng_for, test_candidate_order, test_history_order
from .text import RatingScale

_TASK_KEY = {t: i for i, t in enumerate(TASKS)}  # fixed: adding a task moves no other draw
LIKED, NEUTRAL, DISLIKED, NEVER = 2, 1, 0, 1  # never-interacted ranks with neutral


@dataclass(frozen=True)
class InstructConfig:
    dataset: str
    domain: T.Domain
    scale: RatingScale
    like_threshold: float
    dislike_threshold: float
    tasks: tuple[str, ...] = TASKS
    per_occurrence: int = 1
    history_len: int = 10
    listwise_size: int = 10
    listwise_liked: int = 1
    listwise_disliked: int = 1
    shuffle_candidates: bool = True
    shuffle_history: bool = False
    enhance: bool = False
    n_folds: int = 5
    max_title_chars: int = 100
    n_test_permutations: int = 1
    pairwise_test_pairs: Literal["adjacent", "all"] = "adjacent"
    pairwise_both_orders: bool = False
    test_rank_hint: Literal["backbone", "rating_mf"] = "backbone"

    def __post_init__(self):
        bad = [t for t in self.tasks if t not in TASKS]
        if bad:
            raise RecrankerError(f"instruct.tasks: unknown task '{bad[0]}'")
        if not 2 <= self.listwise_size <= 26:
            raise RecrankerError(f"instruct.listwise_size: must be in 2..26, got {self.listwise_size}")
        if self.listwise_liked + self.listwise_disliked > self.listwise_size:
            raise RecrankerError("instruct.listwise_liked + listwise_disliked exceed listwise_size")


def make_corpus(interactions: pd.DataFrame, items: pd.DataFrame, cfg: InstructConfig, seed: int) -> Corpus:
    return Corpus(
        interactions, items, like=cfg.like_threshold, dislike=cfg.dislike_threshold,
        n_folds=cfg.n_folds, seed=seed, max_title_chars=cfg.max_title_chars,
    )


# ----------------------------------------------------------------------------- training plans


@dataclass
class Plan:
    """One training instruction before rendering: what is shown, what is the answer."""

    user: int
    occurrence: int
    repeat: int
    task: str
    fold: int
    items: list[int]  # candidates in shown order
    levels: list[int]
    ratings: list[float]  # nan for never-interacted
    history: list[int] = field(default_factory=list)  # item ids in shown order
    history_ratings: list[float] = field(default_factory=list)
    tie_keys: list[float] = field(default_factory=list)  # per shown candidate: listwise tie order


@dataclass(frozen=True)
class _Rows:
    """One user's training rows as arrays (oldest first): numpy is much cheaper than pandas
    for the per-instruction selections below."""

    item: np.ndarray
    rating: np.ndarray
    level: np.ndarray
    fold: np.ndarray

    @classmethod
    def of(cls, df: pd.DataFrame) -> _Rows:
        return cls(df["item_id"].to_numpy(np.int64), df["rating"].to_numpy(np.float64),
                   df["level"].to_numpy(np.int64), df["fold"].to_numpy(np.int64))


def _pick(idx: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(idx, size=k, replace=False)) if k else idx[:0]


def _candidates(task: str, rows: _Rows, rng, cfg: InstructConfig):
    """(fold, row indices of the rated candidates, number of never-interacted items) or None."""
    folds = rng.permutation(cfg.n_folds)
    in_fold = [np.flatnonzero(rows.fold == f) for f in folds]
    if task == "pointwise":
        for f, idx in zip(folds, in_fold):
            if len(idx):
                return int(f), _pick(idx, 1, rng), 0
        return None
    if task == "pairwise":
        for f, idx in zip(folds, in_fold):
            liked, disl = idx[rows.level[idx] == LIKED], idx[rows.level[idx] == DISLIKED]
            kinds = [k for k, ok in (("LN", len(liked)), ("LD", len(liked) and len(disl)),
                                     ("ND", len(disl))) if ok]
            if not kinds:
                continue
            kind = kinds[int(rng.integers(len(kinds)))]
            chosen = np.concatenate([_pick(liked, int("L" in kind), rng), _pick(disl, int("D" in kind), rng)])
            return int(f), chosen, int("N" in kind)
        return None
    # listwise: prefer a fold holding a liked item, else one holding a disliked item
    for need in (LIKED, DISLIKED):
        for f, idx in zip(folds, in_fold):
            lv = rows.level[idx]
            if not (lv == need).any():
                continue
            liked, disl = idx[lv == LIKED], idx[lv == DISLIKED]
            nl = min(cfg.listwise_liked, len(liked))
            nd = min(cfg.listwise_disliked, len(disl))
            chosen = np.concatenate([_pick(liked, nl, rng), _pick(disl, nd, rng)])
            return int(f), chosen, cfg.listwise_size - nl - nd
    return None


def plan_training(
    corpus: Corpus, multiset: Sequence[tuple[int, int]], cfg: InstructConfig, seed: int
) -> tuple[list[Plan], Counter]:
    """Plans for every (user occurrence, task, repeat); also counts skipped instructions."""
    plans: list[Plan] = []
    skipped: Counter = Counter()
    for u, mult in multiset:
        rows = _Rows.of(corpus.train_rows(u))
        for occ in range(mult):
            for task in cfg.tasks:
                for rep in range(cfg.per_occurrence):
                    rng = rng_for(seed, TRAIN, u, occ, _TASK_KEY[task], rep)
                    plan = _plan_one(task, corpus, u, occ, rep, rows, rng, cfg)
                    if plan is None:
                        skipped[task] += 1
                    else:
                        plans.append(plan)
    return plans, skipped


def _plan_one(task, corpus: Corpus, u, occ, rep, rows: _Rows, rng, cfg) -> Plan | None:
    got = _candidates(task, rows, rng, cfg)
    if got is None:
        return None
    fold, rated, n_never = got
    items = rows.item[rated].tolist()
    levels = rows.level[rated].tolist()
    ratings = rows.rating[rated].tolist()
    never = corpus.never(u, n_never, rng)
    items += never
    levels += [NEVER] * len(never)
    ratings += [float("nan")] * len(never)
    if len(items) < (1 if task == "pointwise" else 2):
        return None
    shown = rng.permutation(len(items)) if cfg.shuffle_candidates else np.argsort(items, kind="stable")
    keep = np.flatnonzero(~np.isin(rows.item, items))[-cfg.history_len :]
    if not len(keep):
        return None
    horder = rng.permutation(len(keep)) if cfg.shuffle_history else np.arange(len(keep))
    # Drawn last (no earlier draw moves) and per item in candidate order, not shown order.
    ties = rng.random(len(items))
    return Plan(
        user=u, occurrence=occ, repeat=rep, task=task, fold=fold,
        items=[items[i] for i in shown], levels=[levels[i] for i in shown],
        ratings=[ratings[i] for i in shown],
        history=rows.item[keep][horder].tolist(), history_ratings=rows.rating[keep][horder].tolist(),
        tie_keys=[float(ties[i]) for i in shown],
    )


def training_hints(
    corpus: Corpus, plans: Sequence[Plan], fit_predict: FitPredict, n_folds: int
) -> list[list[float]]:
    """Cross-fitted scores of every plan's candidates (model fitted outside the plan's fold)."""
    q = pd.DataFrame(
        [(p.user, i, p.fold) for p in plans for i in p.items], columns=["user_id", "item_id", "fold"]
    )
    if q.empty:
        return [[] for _ in plans]
    train = corpus.train[["user_id", "item_id", "rating"]]
    pred = crossfit_predict(train, corpus.train["fold"].to_numpy(), q, fit_predict, n_folds)
    out, a = [], 0
    for p in plans:
        out.append(pred[a : a + len(p.items)].tolist())
        a += len(p.items)
    return out


# ----------------------------------------------------------------------------- rendering


def _prefix(corpus: Corpus, cfg: InstructConfig, items: Sequence[int], ratings: Sequence[float]) -> str:
    titles = [corpus.titles[i] for i in items]
    shown = [cfg.scale.to_answer(r) for r in ratings]
    return T.history_block(titles, shown, cfg.scale, cfg.domain, cfg.shuffle_history)


def listwise_order(levels: Sequence[int], ratings: Sequence[float], tie_keys: Sequence[float]) -> list[int]:
    """Target order (indices into the shown candidates): level desc, then rating desc, then the
    item's random tie key — so among tied items the order does not depend on where they are shown."""
    key = [(-lv, -(0.0 if np.isnan(r) else r), t) for lv, r, t in zip(levels, ratings, tie_keys)]
    return sorted(range(len(levels)), key=lambda i: key[i])


def _score_order(scores: Sequence[float]) -> list[int]:
    """Indices by score, highest first; ties keep shown order."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable").tolist()


def _round(xs):
    return [round(float(x), 6) for x in xs]


def render_training(
    corpus: Corpus, plans: Sequence[Plan], cfg: InstructConfig, hints: Sequence[Sequence[float]] | None
) -> Iterator[dict]:
    """One chat-format training row per plan (``completion`` holds the answer)."""
    system = T.system_text(cfg.domain)
    for n, p in enumerate(plans):
        titles = [corpus.titles[i] for i in p.items]
        h = hints[n] if hints is not None else None
        prefix = _prefix(corpus, cfg, p.history, p.history_ratings)
        if p.task == "pointwise":
            suffix = T.pointwise_suffix(titles[0], cfg.scale, cfg.domain,
                                        cfg.scale.show(h[0]) if h else None)
            completion = cfg.scale.to_answer(p.ratings[0])
        elif p.task == "pairwise":
            suffix = T.pairwise_suffix(titles[0], titles[1], cfg.domain, (h[0] > h[1]) if h else None)
            completion = "Yes" if p.levels[0] > p.levels[1] else "No"  # levels always differ
        else:
            suffix = T.listwise_suffix(titles, cfg.domain, _score_order(h) if h else None)
            completion = T.listwise_answer(titles, listwise_order(p.levels, p.ratings, p.tie_keys))
        yield {
            "id": f"{cfg.dataset}/train/u{p.user}/o{p.occurrence}/{p.task}/{p.repeat}",
            "dataset": cfg.dataset,
            "task": p.task,
            "user_id": int(p.user),
            "messages": T.messages(system, prefix, suffix),
            "completion": completion,
            "candidates": [int(i) for i in p.items],
            "meta": {
                "fold": p.fold,
                "levels": p.levels,
                "hint": _round(h) if h else None,
                "history": [int(i) for i in p.history],
                "prefix_chars": len(prefix),
            },
        }


def build_training(
    corpus: Corpus,
    multiset: Sequence[tuple[int, int]],
    cfg: InstructConfig,
    seed: int,
    fit_predict: FitPredict | None = None,
) -> tuple[list[dict], dict]:
    """Training rows + statistics. ``fit_predict`` is required when ``cfg.enhance`` is on."""
    plans, skipped = plan_training(corpus, multiset, cfg, seed)
    hints = None
    if cfg.enhance:
        if fit_predict is None:
            raise RecrankerError("instruct.enhance is on but no hint model (fit_predict) was given")
        hints = training_hints(corpus, plans, fit_predict, cfg.n_folds)
    rows = list(render_training(corpus, plans, cfg, hints))
    return rows, training_stats(plans, rows, skipped, hints, multiset)


def training_stats(plans, rows, skipped: Counter, hints, multiset) -> dict:
    """Counts per task, multiplicity histogram, hint coverage and hint quality."""
    per_task = Counter(r["task"] for r in rows)
    mult_hist = Counter(m for _, m in multiset)
    stats: dict = {
        "rows": len(rows),
        "per_task": {t: per_task.get(t, 0) for t in TASKS},
        "skipped": {t: skipped.get(t, 0) for t in TASKS},
        "users": len({r["user_id"] for r in rows}),
        "multiplicity_histogram": {str(k): v for k, v in sorted(mult_hist.items())},
        "hint_coverage": (sum(r["meta"]["hint"] is not None for r in rows) / len(rows)) if rows else 0.0,
        "pairwise_yes_share": _share(r["completion"] == "Yes" for r in rows if r["task"] == "pairwise"),
        "mean_prompt_chars": float(np.mean([len(r["messages"][1]["content"]) for r in rows])) if rows else 0.0,
    }
    if hints is not None:
        pw = [(p, h) for p, h in zip(plans, hints) if p.task == "pointwise"]
        if pw:
            stats["pointwise_hint_mae"] = float(np.mean([abs(h[0] - p.ratings[0]) for p, h in pw]))
        pr = [(r, h) for r, h in zip(rows, hints) if r["task"] == "pairwise"]
        if pr:
            stats["pairwise_hint_accuracy"] = float(
                np.mean([(h[0] > h[1]) == (r["completion"] == "Yes") for r, h in pr])
            )
    return stats


def _share(flags) -> float | None:
    flags = list(flags)
    return float(np.mean(flags)) if flags else None


# ----------------------------------------------------------------------------- test rows


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
    system = T.system_text(cfg.domain)
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
            prefix = _prefix(corpus, cfg, h_items, hist["rating"].to_numpy(np.float64)[ho].tolist())
            shown = test_candidate_order(seed, u, perm, k, cfg.shuffle_candidates)
            pos = np.empty(k, dtype=np.int64)
            pos[shown] = np.arange(k)
            ctx = _TestPrompt(
                base={"dataset": cfg.dataset, "user_id": u, "backbone": backbone, "label": target},
                rid=f"{cfg.dataset}/{backbone}/{'' if split == 'test' else split + '/'}u{u}/p{perm}",
                system=system, prefix=prefix,
                items=items, ranks=ranks,
                common={"perm": perm, "history": [int(i) for i in h_items],
                        "prefix_chars": len(prefix), "target_in_candidates": bool(target in items)},
            )  # fmt: skip
            row = ctx.row
            if "pointwise" in cfg.tasks and (perm == 0 or cfg.shuffle_history):
                for j, i in enumerate(shown):
                    hv = cfg.scale.show(rating_pred[i]) if cfg.enhance else None
                    suffix = T.pointwise_suffix(corpus.titles[items[i]], cfg.scale, cfg.domain, hv)
                    yield row("pointwise", j, [i], suffix, _round([rating_pred[i]]) if cfg.enhance else None)
            if "pairwise" in cfg.tasks:
                j = 0
                for a, b in _pairs(k, cfg.pairwise_test_pairs):
                    first, second = (a, b) if pos[a] < pos[b] else (b, a)
                    orders = [(first, second), (second, first)] if cfg.pairwise_both_orders else [(first, second)]
                    for x, y in orders:
                        hint = bool(rank_scores[x] > rank_scores[y]) if cfg.enhance else None
                        suffix = T.pairwise_suffix(corpus.titles[items[x]], corpus.titles[items[y]],
                                                   cfg.domain, hint)
                        yield row("pairwise", j, [x, y], suffix,
                                  _round([rank_scores[x], rank_scores[y]]) if cfg.enhance else None)
                        j += 1
            if "listwise" in cfg.tasks:
                titles = [corpus.titles[items[i]] for i in shown]
                hint_order = _score_order(rank_scores[shown]) if cfg.enhance else None
                suffix = T.listwise_suffix(titles, cfg.domain, hint_order)
                yield row("listwise", 0, shown.tolist(), suffix,
                          _round(rank_scores[shown]) if cfg.enhance else None)


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
        "target_in_candidates": _share(hit.values()),
    }
