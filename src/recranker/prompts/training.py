"""Training instructions of the three RecRanker tasks (one JSON object each).

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
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recranker.errors import RecrankerError
from recranker.tasks import TASKS

from . import templates as T
from .config import InstructConfig
from .corpus import Corpus
from .enhance import FitPredict, crossfit_predict
from .layout import history_prefix, rounded, score_order, share
from .shifting import TRAIN, rng_for

_TASK_KEY = {t: i for i, t in enumerate(TASKS)}  # fixed: adding a task moves no other draw
LIKED, NEUTRAL, DISLIKED, NEVER = 2, 1, 0, 1  # never-interacted ranks with neutral


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


def listwise_order(levels: Sequence[int], ratings: Sequence[float], tie_keys: Sequence[float]) -> list[int]:
    """Target order (indices into the shown candidates): level desc, then rating desc, then the
    item's random tie key — so among tied items the order does not depend on where they are shown."""
    key = [(-lv, -(0.0 if np.isnan(r) else r), t) for lv, r, t in zip(levels, ratings, tie_keys)]
    return sorted(range(len(levels)), key=lambda i: key[i])


def render_training(
    corpus: Corpus, plans: Sequence[Plan], cfg: InstructConfig, hints: Sequence[Sequence[float]] | None
) -> Iterator[dict]:
    """One chat-format training row per plan (``completion`` holds the answer)."""
    ctx = corpus.ctx
    system = T.system_text(ctx.domain)
    for n, p in enumerate(plans):
        titles = [corpus.titles[i] for i in p.items]
        h = hints[n] if hints is not None else None
        prefix = history_prefix(corpus, cfg, p.history, p.history_ratings)
        if p.task == "pointwise":
            suffix = T.pointwise_suffix(titles[0], ctx.scale, ctx.domain,
                                        ctx.scale.show(h[0]) if h else None)
            completion = ctx.scale.to_answer(p.ratings[0])
        elif p.task == "pairwise":
            suffix = T.pairwise_suffix(titles[0], titles[1], ctx.domain, (h[0] > h[1]) if h else None)
            completion = "Yes" if p.levels[0] > p.levels[1] else "No"  # levels always differ
        else:
            suffix = T.listwise_suffix(titles, ctx.domain, score_order(h) if h else None)
            completion = T.listwise_answer(titles, listwise_order(p.levels, p.ratings, p.tie_keys))
        yield {
            "id": f"{ctx.name}/train/u{p.user}/o{p.occurrence}/{p.task}/{p.repeat}",
            "dataset": ctx.name,
            "task": p.task,
            "user_id": int(p.user),
            "messages": T.messages(system, prefix, suffix),
            "completion": completion,
            "candidates": [int(i) for i in p.items],
            "meta": {
                "fold": p.fold,
                "levels": p.levels,
                "hint": rounded(h) if h else None,
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
        "pairwise_yes_share": share(r["completion"] == "Yes" for r in rows if r["task"] == "pairwise"),
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


