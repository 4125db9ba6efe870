"""CL4SRec (Xie et al., ICDE 2022): SASRec + contrastive learning over augmented sequences.

Each training sequence gets two views, each made by one augmentation drawn at random —
crop (keep a random contiguous ``crop_eta`` share), mask (replace a ``mask_gamma`` share with
[MASK]) or reorder (shuffle a random ``reorder_beta``-long segment) —; the views' final hidden
states are contrasted (NT-Xent, dot product / ``cl_tau``, other in-batch views as negatives)
and the loss is added with weight ``cl_weight`` to SASRec's next-item loss. All augmentations
are computed for the whole batch at once on left-padded tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import CL4SRecConfig
from .data import Interactions
from .sasrec import SASRec


def _right_aligned(
    seq: torch.Tensor, start: torch.Tensor, length: torch.Tensor, pad: int
) -> torch.Tensor:
    """Row-wise ``seq[r, start[r] : start[r] + length[r]]``, left-padded to seq's width."""
    L = seq.shape[1]
    k = torch.arange(L).unsqueeze(0) - (L - length).unsqueeze(1)  # offset inside the kept span
    src = (start.unsqueeze(1) + k).clamp(0, L - 1)
    return torch.where(k >= 0, seq.gather(1, src), torch.full_like(seq, pad))


class CL4SRec(SASRec):
    name = "cl4srec"
    Config = CL4SRecConfig

    def augment(self, seq: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One random augmentation per row of a left-padded batch."""
        c, (b, L) = self.config, seq.shape
        n = (seq != self.pad).sum(1)
        first = L - n  # column of the first real item
        u = lambda: torch.rand(b, generator=gen)
        # crop
        keep = (c.crop_eta * n).floor().long().clamp(min=1)
        crop = _right_aligned(seq, first + (u() * (n - keep + 1)).floor().long(), keep, self.pad)
        # mask
        hit = (torch.rand(b, L, generator=gen) < c.mask_gamma) & (seq != self.pad)
        mask = seq.masked_fill(hit, self.mask_token)
        # reorder: sort keys = position, except random keys inside the chosen segment
        span = (c.reorder_beta * n).floor().long()
        start = first + (u() * (n - span + 1)).floor().long()
        pos = torch.arange(L).unsqueeze(0).float().expand(b, L)
        inside = (pos >= start.unsqueeze(1)) & (pos < (start + span).unsqueeze(1))
        keys = torch.where(
            inside, start.unsqueeze(1) + torch.rand(b, L, generator=gen) * span.unsqueeze(1), pos
        )
        reorder = seq.gather(1, keys.argsort(dim=1, stable=True))
        which = torch.randint(0, 3, (b, 1), generator=gen)
        return torch.where(which == 0, crop, torch.where(which == 1, mask, reorder))

    def batch_loss(
        self, rows: torch.Tensor, data: Interactions, gen: torch.Generator
    ) -> torch.Tensor:
        loss = super().batch_loss(rows, data, gen)
        seq = rows[:, :-1]
        z = torch.cat(
            [self.encode(self.augment(seq, gen))[:, -1], self.encode(self.augment(seq, gen))[:, -1]]
        )
        b = len(seq)
        sim = (z @ z.T) / self.config.cl_tau
        sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool), float("-inf"))
        target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)])
        return loss + self.config.cl_weight * F.cross_entropy(sim, target)
