"""The in-memory view of ``interactions.parquet`` that every backbone trains and ranks on.

Kept numpy/scipy-only (no torch) so that building it is cheap and it can be shared by models,
the evaluation code and the tests. Splits follow docs/CONTRACTS.md: per user, the training
interactions in chronological order plus one valid and one test item (leave-one-out by time).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recranker.errors import RecrankerError

SPLITS = ("valid", "test")
_REQUIRED = ("user_id", "item_id", "split")


@dataclass(frozen=True, eq=False)
class Interactions:
    """Training pairs (sorted by user, then time) and the held-out valid/test item of each user.

    ``valid_items[u]`` / ``test_items[u]`` are -1 for a user without that split row; such users
    are left out of the metrics but still get candidates.
    """

    n_users: int
    n_items: int
    train_users: np.ndarray  # int64 [n_train]
    train_items: np.ndarray  # int64 [n_train]
    valid_items: np.ndarray  # int64 [n_users]
    test_items: np.ndarray  # int64 [n_users]

    @classmethod
    def from_frame(
        cls, df: pd.DataFrame, n_users: int | None = None, n_items: int | None = None
    ) -> Interactions:
        """Build from a frame with ``user_id, item_id, split`` (+ optional ``timestamp``).

        Rows keep their frame order within a user unless a ``timestamp`` column is present,
        in which case they are ordered by it (stable, so the frame order breaks ties).
        """
        missing = [c for c in _REQUIRED if c not in df.columns]
        if missing:
            raise RecrankerError(f"interactions: missing column(s) {', '.join(missing)}")
        bad = ~df["split"].isin(("train", "valid", "test"))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise RecrankerError(
                f"interactions: row {row}: split '{df['split'].iloc[row]}' not in train/valid/test"
            )
        users = df["user_id"].to_numpy(np.int64)
        items = df["item_id"].to_numpy(np.int64)
        if len(df) and (users.min() < 0 or items.min() < 0):
            raise RecrankerError("interactions: user_id and item_id must be >= 0")
        n_users = int(users.max() + 1 if len(df) else 0) if n_users is None else int(n_users)
        n_items = int(items.max() + 1 if len(df) else 0) if n_items is None else int(n_items)
        if len(df) and (users.max() >= n_users or items.max() >= n_items):
            raise RecrankerError(
                f"interactions: ids exceed n_users={n_users} / n_items={n_items} (from stats.json)"
            )
        # np.lexsort is stable: the frame order breaks timestamp ties (CONTRACTS.md).
        if "timestamp" in df.columns:
            order = np.lexsort((df["timestamp"].to_numpy(np.int64), users))
        else:
            order = np.argsort(users, kind="stable")
        split = df["split"].to_numpy()[order]
        users, items = users[order], items[order]
        held = {}
        for name in SPLITS:
            mask = split == name
            counts = np.bincount(users[mask], minlength=n_users)
            if (counts > 1).any():
                u = int(np.flatnonzero(counts > 1)[0])
                raise RecrankerError(
                    f"interactions: user {u} has {counts[u]} '{name}' rows (max 1)"
                )
            arr = np.full(n_users, -1, dtype=np.int64)
            arr[users[mask]] = items[mask]
            held[name] = arr
        tr = split == "train"
        return cls(n_users, n_items, users[tr], items[tr], held["valid"], held["test"])

    # ----------------------------------------------------------------- derived views
    def targets(self, split: str) -> np.ndarray:
        """Ground-truth item per user for ``split`` (-1 when absent)."""
        _check_split(split)
        return self.valid_items if split == "valid" else self.test_items

    @cached_property
    def train_matrix(self) -> sp.csr_matrix:
        """Binary user × item matrix of the training pairs (duplicates collapsed)."""
        m = sp.csr_matrix(
            (
                np.ones(len(self.train_users), dtype=np.float32),
                (self.train_users, self.train_items),
            ),
            shape=(self.n_users, self.n_items),
        )
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    def seen(self, split: str) -> sp.csr_matrix:
        """Items to mask when ranking for ``split``: train items, plus the valid item for test."""
        _check_split(split)
        if split == "valid":
            return self.train_matrix
        has = self.valid_items >= 0
        extra = sp.csr_matrix(
            (
                np.ones(int(has.sum()), dtype=np.float32),
                (np.flatnonzero(has), self.valid_items[has]),
            ),
            shape=(self.n_users, self.n_items),
        )
        m = (self.train_matrix + extra).tocsr()
        m.data[:] = 1.0
        return m

    @cached_property
    def train_indptr(self) -> np.ndarray:
        """Row pointer of the chronological training sequences (train arrays are user-sorted)."""
        return np.concatenate(
            [[0], np.cumsum(np.bincount(self.train_users, minlength=self.n_users))]
        )

    def contexts(self, split: str, max_len: int, pad: int) -> np.ndarray:
        """Left-padded [n_users, max_len] of each user's last items before ``split``.

        For ``valid`` the context is the training sequence; for ``test`` it also ends with the
        valid item (the model may use everything before the test interaction).
        """
        _check_split(split)
        out = np.full((self.n_users, max_len), pad, dtype=np.int64)
        ptr = self.train_indptr
        lengths = np.diff(ptr)
        extra = (self.valid_items >= 0) if split == "test" else np.zeros(self.n_users, bool)
        n_train = np.minimum(lengths, max_len - extra.astype(np.int64))
        # position j of the output row (from the right) for each kept training item
        rows = np.repeat(np.arange(self.n_users), n_train)
        starts = ptr[1:] - n_train
        offs = np.arange(int(n_train.sum())) - np.repeat(np.cumsum(n_train) - n_train, n_train)
        cols = max_len - extra.astype(np.int64)[rows] - n_train[rows] + offs
        out[rows, cols] = self.train_items[np.repeat(starts, n_train) + offs]
        out[extra, -1] = self.valid_items[extra]
        return out

    def windows(self, max_len: int, pad: int) -> np.ndarray:
        """Training sequences cut from the end into non-overlapping windows of max_len + 1.

        Each row is a left-padded chunk; models predict item t+1 from items ≤ t inside a row,
        so a long history contributes several rows instead of only its last ``max_len`` items.
        Rows shorter than 2 real items are dropped.
        """
        width = max_len + 1
        ptr = self.train_indptr
        lengths = np.diff(ptr)
        n_win = np.maximum(1, -(-np.maximum(lengths - 1, 0) // max_len))  # ceil((L-1)/max_len)
        rows_out = []
        for w in range(int(n_win.max()) if self.n_users else 0):
            users = np.flatnonzero(n_win > w)
            end = ptr[users + 1] - w * max_len  # exclusive; windows overlap by one item
            start = np.maximum(ptr[users], end - width)
            n = end - start
            keep = n >= 2
            users, start, n = users[keep], start[keep], n[keep]
            block = np.full((len(users), width), pad, dtype=np.int64)
            r = np.repeat(np.arange(len(users)), n)
            offs = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
            block[r, width - np.repeat(n, n) + offs] = self.train_items[np.repeat(start, n) + offs]
            rows_out.append(block)
        if not rows_out:
            return np.zeros((0, width), dtype=np.int64)
        return np.concatenate(rows_out)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise RecrankerError(f"split must be one of {', '.join(SPLITS)}, got '{split}'")
