"""MixGCF (Huang et al., KDD 2021): LightGCN trained with synthesised hard negatives.

For each (user, positive) a pool of ``n_candidates`` uniform negatives is drawn. Positive
mixing blends every candidate's layer-l embedding with the positive's (a random α per layer);
hop mixing then picks, per layer, the blended candidate the user's layer-l embedding scores
highest; the mean over layers of the picked embeddings is the negative in the BPR loss.
"""

from __future__ import annotations

import torch

from .config import MixGCFConfig
from .lightgcn import LightGCN
from .mf import bpr_loss, l2


class MixGCF(LightGCN):
    name = "mixgcf"
    Config = MixGCFConfig

    def n_negatives(self) -> int:
        return self.config.n_candidates

    def batch_loss(self, u, i, j, gen: torch.Generator) -> torch.Tensor:
        emb = self.layers()  # [n, L+1, d]
        users, items = emb[: self.n_users], emb[self.n_users :]
        s_e, p_e, n_e = users[u], items[i], items[j]  # [b,L+1,d], [b,L+1,d], [b,M,L+1,d]
        alpha = torch.rand(len(u), 1, p_e.shape[1], 1, generator=gen)
        mixed = alpha * p_e.unsqueeze(1) + (1 - alpha) * n_e  # positive mixing
        scores = (s_e.unsqueeze(1) * mixed).sum(-1)  # [b, M, L+1]
        pick = scores.argmax(dim=1).detach()  # hop mixing: best candidate per layer
        hard = mixed.gather(1, pick[:, None, :, None].expand(-1, 1, -1, mixed.shape[-1])).squeeze(1)
        loss = bpr_loss(s_e.mean(1), p_e.mean(1), hard.mean(1))
        return loss + self.config.weight_decay * l2(s_e[:, 0], p_e[:, 0], hard[:, 0])
