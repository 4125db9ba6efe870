"""Pieces the training and ranking instructions share: the history prefix, orders and rounding."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import templates as T
from .config import InstructConfig
from .corpus import Corpus


def history_prefix(corpus: Corpus, cfg: InstructConfig, items: Sequence[int], ratings: Sequence[float]) -> str:
    """The prompt's history block: the items' titles and the user's ratings of them."""
    ctx = corpus.ctx
    titles = [corpus.titles[i] for i in items]
    shown = [ctx.scale.to_answer(r) for r in ratings]
    return T.history_block(titles, shown, ctx.scale, ctx.domain, cfg.shuffle_history)


def score_order(scores: Sequence[float]) -> list[int]:
    """Indices by score, highest first; ties keep shown order."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable").tolist()


def rounded(xs) -> list[float]:
    return [round(float(x), 6) for x in xs]


def share(flags) -> float | None:
    """The share of true flags (None without any)."""
    flags = list(flags)
    return float(np.mean(flags)) if flags else None
