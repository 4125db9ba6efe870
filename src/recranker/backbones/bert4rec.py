"""BERT4Rec (Sun et al., CIKM 2019): bidirectional self-attention trained by masked-item cloze.

Training masks each real item of a window with ``mask_prob`` (at least one per row) and
predicts it with a full softmax; ranking appends a [MASK] after the context and scores items
at that position.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .config import BERT4RecConfig
from .data import Interactions
from .sequential import SequentialBackbone, left_pad


class BERT4Rec(SequentialBackbone):
    name = "bert4rec"
    Config = BERT4RecConfig
    causal = False
    window_extra = 0  # windows are max_len long: no shifted targets

    def context(self, data: Interactions, split: str) -> np.ndarray:
        ctx = data.contexts(split, self.config.max_len - 1, self.pad)
        return np.concatenate([ctx, np.full((len(ctx), 1), self.mask_token, ctx.dtype)], axis=1)

    def sequence_input(self, seqs) -> np.ndarray:
        ctx = left_pad(seqs, self.config.max_len - 1, self.pad)  # the [MASK] slot comes last
        return np.concatenate([ctx, np.full((len(ctx), 1), self.mask_token, ctx.dtype)], axis=1)

    def batch_loss(
        self, rows: torch.Tensor, data: Interactions, gen: torch.Generator
    ) -> torch.Tensor:
        real = rows != self.pad
        masked = (torch.rand(rows.shape, generator=gen) < self.config.mask_prob) & real
        masked[:, -1] |= ~masked.any(dim=1)  # the last position is always a real item
        hidden = self.encode(rows.masked_fill(masked, self.mask_token))
        return F.cross_entropy(self.logits(hidden[masked]), rows[masked])
