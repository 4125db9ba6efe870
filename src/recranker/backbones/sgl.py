"""SGL (Wu et al., SIGIR 2021): LightGCN + self-supervised contrast between two graph views.

Every epoch two corrupted graphs are drawn — edge dropout ("ed": each training edge dropped
with ``drop_ratio``) or node dropout ("nd": each user/item node dropped with its edges) —; the
batch's users and items are pulled towards their own embedding in the other view and pushed
from every other node's (InfoNCE, cosine / ``ssl_tau``), weighted by ``ssl_weight`` beside BPR.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import SGLConfig
from .data import Interactions
from .lightgcn import LightGCN, normalized_adjacency


def info_nce(
    view1: torch.Tensor, view2: torch.Tensor, index: torch.Tensor, tau: float
) -> torch.Tensor:
    """Mean InfoNCE of nodes ``index``: positive = same node in view 2, negatives = all others."""
    a = F.normalize(view1[index], dim=1)
    b = F.normalize(view2, dim=1)
    return F.cross_entropy(a @ b.T / tau, index)


class SGL(LightGCN):
    name = "sgl"
    Config = SGLConfig

    def __init__(self, n_users: int, n_items: int, config=None, seed: int = 0):
        super().__init__(n_users, n_items, config, seed)
        if self.config.aug not in ("ed", "nd"):
            from recranker.errors import RecrankerError

            raise RecrankerError(f"sgl: aug must be 'ed' or 'nd', got '{self.config.aug}'")
        self._views = ()

    def _view(self, data: Interactions, gen: torch.Generator):
        u, i, rho = data.train_users, data.train_items, self.config.drop_ratio
        if self.config.aug == "ed":
            keep = (torch.rand(len(u), generator=gen) >= rho).numpy()
        else:
            keep_u = (torch.rand(self.n_users, generator=gen) >= rho).numpy()
            keep_i = (torch.rand(self.n_items, generator=gen) >= rho).numpy()
            keep = keep_u[u] & keep_i[i]
        return normalized_adjacency(u[keep], i[keep], self.n_users, self.n_items)

    def train_epoch(self, data: Interactions, opt, gen: torch.Generator) -> float:
        self._views = (self._view(data, gen), self._view(data, gen))
        try:
            return super().train_epoch(data, opt, gen)
        finally:
            self._views = ()

    def batch_loss(self, u, i, j, gen: torch.Generator) -> torch.Tensor:
        loss = self.bpr_step(u, i, j)
        u1, i1 = self.propagate(self._views[0])
        u2, i2 = self.propagate(self._views[1])
        uu, ii = torch.unique(u), torch.unique(i)
        ssl = info_nce(u1, u2, uu, self.config.ssl_tau) + info_nce(i1, i2, ii, self.config.ssl_tau)
        return loss + self.config.ssl_weight * ssl
