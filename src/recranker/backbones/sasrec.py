"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention predicts the next item.

``loss="bce"`` is the paper's one-negative binary loss; ``"ce"`` (default) the full-softmax
cross-entropy, which converges in far fewer epochs on CPU-sized catalogues.
"""

from __future__ import annotations

import torch

from .config import SASRecConfig
from .data import Interactions
from .sequential import SequentialBackbone


class SASRec(SequentialBackbone):
    name = "sasrec"
    Config = SASRecConfig

    def __init__(self, n_users: int, n_items: int, config=None, seed: int = 0):
        super().__init__(n_users, n_items, config, seed)
        if self.config.loss not in ("ce", "bce"):
            from recranker.errors import RecrankerError

            raise RecrankerError(
                f"{self.name}: loss must be 'ce' or 'bce', got '{self.config.loss}'"
            )

    def batch_loss(
        self, rows: torch.Tensor, data: Interactions, gen: torch.Generator
    ) -> torch.Tensor:
        inp, tgt = rows[:, :-1], rows[:, 1:]
        return self.next_item_loss(self.encode(inp), inp, tgt, self.config.loss, gen)
