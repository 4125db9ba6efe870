"""MostPop: rank items by training popularity. The sanity floor every model must clear."""

from __future__ import annotations

import numpy as np
import torch

from .base import Backbone, Scorer
from .config import MostPopConfig
from .data import Interactions


class MostPop(Backbone):
    name = "mostpop"
    Config = MostPopConfig
    trainable = False

    def __init__(self, n_users: int, n_items: int, config=None, seed: int = 0):
        super().__init__(n_users, n_items, config, seed)
        self.register_buffer("popularity", torch.zeros(n_items))

    def prepare(self, data: Interactions) -> None:
        counts = np.asarray(data.train_matrix.sum(axis=0)).ravel()
        self.popularity.copy_(torch.from_numpy(counts.astype(np.float32)))

    def scorer(self, data: Interactions, split: str) -> Scorer:
        return lambda users: self.popularity.expand(len(users), -1)

    def user_embeddings(self, data: Interactions) -> np.ndarray:
        """No latent space here: [log1p(#train items), mean log1p(popularity) of the history]."""
        m = data.train_matrix
        n = np.asarray(m.sum(axis=1)).ravel()
        pop = np.log1p(self.popularity.numpy().astype(np.float64))
        mean_pop = (m @ pop) / np.maximum(n, 1)
        return np.stack([np.log1p(n), mean_pop], axis=1).astype(np.float32)
