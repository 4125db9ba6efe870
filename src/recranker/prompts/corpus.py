"""Interactions indexed per user for prompt building, and the safe title of every item.

What each side may see:

* training instructions: only ``split == "train"`` rows (history, candidates, hints); the
  user's valid/test items are additionally *excluded* from the never-interacted pool, so they
  never appear in a training instruction of that user, not even as a negative;
* test instructions: history from ``train`` + ``valid`` rows; the ``test`` row is the label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recranker.errors import RecrankerError

from . import templates as T
from .config import InstructConfig
from .enhance import assign_folds, preference_level
from .text import RatingScale, clean_text

REQUIRED = ("user_id", "item_id", "rating", "timestamp", "split")


@dataclass(frozen=True)
class DatasetContext:
    """The dataset the instructions are built for (not hyper-parameters: they follow from it)."""

    name: str  # the dataset's name (row ids)
    domain: T.Domain  # wording of its items ("movie", "book", ...)
    scale: RatingScale  # its rating scale (pointwise answers)
    like_threshold: float  # rating ≥ this: liked
    dislike_threshold: float  # rating ≤ this: disliked



class Corpus:
    """Chronologically sorted interactions with per-user slices, folds and item titles."""

    def __init__(
        self,
        interactions: pd.DataFrame,
        items: pd.DataFrame,
        *,
        like: float,
        dislike: float,
        n_folds: int,
        seed: int,
        max_title_chars: int = 100,
        ctx: DatasetContext | None = None,
        negatives: str = "uniform",
    ):
        if negatives not in ("uniform", "popular"):
            raise RecrankerError(f"instruct.negatives: unknown sampling {negatives!r} (uniform|popular)")
        self.negatives = negatives
        self.ctx = ctx  # the dataset's name, domain wording, rating scale and thresholds
        missing = [c for c in REQUIRED if c not in interactions.columns]
        if missing:
            raise RecrankerError(f"interactions: missing column '{missing[0]}'")
        if "item_id" not in items.columns or "title" not in items.columns:
            raise RecrankerError("items: needs 'item_id' and 'title' columns")
        if dislike >= like:
            raise RecrankerError(
                f"dislike threshold ({dislike}) must be below the like threshold ({like})"
            )
        df = interactions[list(REQUIRED)]
        order = np.lexsort((df["timestamp"].to_numpy(), df["user_id"].to_numpy()))  # stable
        df = df.iloc[order].reset_index(drop=True)
        self.n_items = int(max(items["item_id"].max(), df["item_id"].max())) + 1
        self.n_users = int(df["user_id"].max()) + 1
        titles = np.array([f"Item {i}" for i in range(self.n_items)], dtype=object)
        ids = items["item_id"].to_numpy(np.int64)
        titles[ids] = [clean_text(t, max_title_chars) for t in items["title"].tolist()]
        empty = [i for i in range(self.n_items) if not titles[i]]
        for i in empty:
            titles[i] = f"Item {i}"
        self.titles = titles

        split = df["split"].to_numpy()
        self.train = df.loc[split == "train"].reset_index(drop=True)
        lv = preference_level(self.train["rating"].to_numpy(), like, dislike)
        self.train["level"] = lv
        self.train["fold"] = assign_folds(self.train["user_id"].to_numpy(), lv, n_folds, seed)
        self.visible = df.loc[split != "test"].reset_index(drop=True)  # test-time history
        test = df.loc[split == "test"]
        self.test_item = dict(zip(test["user_id"].tolist(), test["item_id"].tolist()))
        valid = df.loc[split == "valid"]
        self.valid_item = dict(zip(valid["user_id"].tolist(), valid["item_id"].tolist()))
        self._seen = {
            int(u): frozenset(g.tolist()) for u, g in df.groupby("user_id")["item_id"]
        }
        self._train_users = self.train["user_id"].to_numpy()
        self._visible_users = self.visible["user_id"].to_numpy()
        # Training popularity (+1: every item stays drawable), for `negatives: popular`.
        pop = np.bincount(self.train["item_id"].to_numpy(np.int64), minlength=self.n_items) + 1.0
        self._popularity = pop / pop.sum()

    @staticmethod
    def _slice(users: np.ndarray, u: int) -> slice:
        return slice(int(np.searchsorted(users, u, "left")), int(np.searchsorted(users, u, "right")))

    def train_rows(self, u: int) -> pd.DataFrame:
        """The user's training rows, oldest first (columns incl. level, fold)."""
        return self.train.iloc[self._slice(self._train_users, u)]

    def visible_rows(self, u: int) -> pd.DataFrame:
        """The user's train + valid rows, oldest first (test-time history)."""
        return self.visible.iloc[self._slice(self._visible_users, u)]

    def history_rows(self, u: int, split: str) -> pd.DataFrame:
        """What a ranking prompt for ``split`` may show, oldest first: everything before that
        split's item (train rows for ``valid``; train + valid rows for ``test``)."""
        if split == "valid":
            return self.train_rows(u)
        if split == "test":
            return self.visible_rows(u)
        raise RecrankerError(f"unknown ranking split '{split}' (valid|test)")

    def target_item(self, split: str) -> dict[int, int]:
        """user → the held-out item of ``split`` (valid or test)."""
        return {"valid": self.valid_item, "test": self.test_item}[split]

    def train_counts(self) -> np.ndarray:
        """q_u: training interactions per user (index = user id)."""
        return np.bincount(self._train_users, minlength=self.n_users)

    def seen(self, u: int) -> frozenset:
        """Every item the user interacted with, in any split."""
        return self._seen.get(u, frozenset())

    def never(self, u: int, k: int, rng: np.random.Generator, exclude=()) -> list[int]:
        """``k`` distinct items the user never interacted with (any split): uniformly, or with
        ``negatives="popular"`` in proportion to their training interactions + 1, so the negatives
        look like the popular items a backbone proposes at ranking time rather than obscure ones
        a title alone gives away."""
        banned = set(self.seen(u)) | set(exclude)
        k = min(k, self.n_items - len(banned))
        out: list[int] = []
        while len(out) < k:
            draws = (rng.integers(self.n_items, size=2 * k + 4) if self.negatives == "uniform"
                     else rng.choice(self.n_items, size=2 * k + 4, p=self._popularity))
            for d in draws.tolist():
                if d not in banned:
                    banned.add(d)
                    out.append(d)
                    if len(out) == k:
                        break
        return out


def make_corpus(interactions: pd.DataFrame, items: pd.DataFrame, ctx: DatasetContext, cfg: InstructConfig,
                seed: int) -> Corpus:
    """The :class:`Corpus` of one dataset, with its context attached (``corpus.ctx``)."""
    return Corpus(
        interactions, items, like=ctx.like_threshold, dislike=ctx.dislike_threshold,
        n_folds=cfg.n_folds, seed=seed, max_title_chars=cfg.max_title_chars, ctx=ctx,
        negatives=cfg.negatives,
    )
