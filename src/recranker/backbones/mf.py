"""Matrix factorisation with the BPR pairwise loss (Rendle et al., 2009)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .base import Backbone, Scorer, bpr_batches
from .config import MFConfig
from .data import Interactions


def bpr_loss(u: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """-log σ(u·pos − u·neg), averaged; ``neg`` may carry several negatives [b, n, d]."""
    s_pos = (u * pos).sum(-1, keepdim=True)
    s_neg = (u.unsqueeze(1) * neg).sum(-1) if neg.dim() == 3 else (u * neg).sum(-1, keepdim=True)
    return -F.logsigmoid(s_pos - s_neg).mean()


def l2(*tensors: torch.Tensor) -> torch.Tensor:
    """Half the squared norm of the batch's embeddings, per example (LightGCN's convention)."""
    return sum(t.pow(2).sum() for t in tensors) / (2 * tensors[0].shape[0])


class MF(Backbone):
    name = "mf"
    Config = MFConfig

    def __init__(self, n_users: int, n_items: int, config: MFConfig | None = None, seed: int = 0):
        super().__init__(n_users, n_items, config, seed)
        self.user = self.embedding(n_users, self.config.dim)
        self.item = self.embedding(n_items, self.config.dim)

    def train_epoch(self, data: Interactions, opt, gen: torch.Generator) -> float:
        total, n = 0.0, 0
        for u, i, j in bpr_batches(data, self.config.batch_size, gen):
            pu, qi, qj = self.user(u), self.item(i), self.item(j[:, 0])
            loss = bpr_loss(pu, qi, qj) + self.config.weight_decay * l2(pu, qi, qj)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, n = total + loss.item() * len(u), n + len(u)
        return total / max(n, 1)

    def scorer(self, data: Interactions, split: str) -> Scorer:
        items = self.item.weight
        return lambda users: self.user.weight[users] @ items.T

    def user_embeddings(self, data: Interactions) -> np.ndarray:
        return self.user.weight.detach().numpy().astype(np.float32)
