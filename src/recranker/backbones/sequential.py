"""What the self-attentive sequential models share (SASRec, BERT4Rec, CL4SRec).

Items are embedded with two extra rows: ``pad = n_items`` and ``mask = n_items + 1``; scores
are dot products with the first ``n_items`` rows (tied input/output embeddings). Training rows
are the users' chronological training sequences cut into windows (``Interactions.windows``),
so long histories are not truncated. At ranking time the context is the sequence before the
split (train for valid; train + the valid item for test), and the "user embedding" is the
final hidden state over the training sequence. :meth:`SequentialBackbone.score_sequences` scores
any given sequences instead (e.g. the history of a DMPO preference sample).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .base import Backbone, Scorer
from .data import Interactions


def left_pad(seqs: Sequence[Sequence[int]], width: int, pad: int) -> np.ndarray:
    """int64 [len(seqs), width]: the last ``width`` items of each sequence, right-aligned."""
    out = np.full((len(seqs), width), pad, dtype=np.int64)
    for r, seq in enumerate(seqs):
        tail = np.asarray(seq, dtype=np.int64)[-width:]
        out[r, width - len(tail) :] = tail
    return out


class SequentialBackbone(Backbone):
    causal: bool = True  # SASRec-style left-to-right attention; BERT4Rec sets False
    window_extra: int = 1  # windows of max_len + 1: inputs are [:-1], next-item targets [1:]

    def __init__(self, n_users: int, n_items: int, config=None, seed: int = 0):
        super().__init__(n_users, n_items, config, seed)
        c = self.config
        if c.dim % c.n_heads:
            from recranker.errors import RecrankerError

            raise RecrankerError(
                f"{self.name}: dim ({c.dim}) must be divisible by n_heads ({c.n_heads})"
            )
        self.pad, self.mask_token = n_items, n_items + 1
        self.items = self.embedding(n_items + 2, c.dim, std=0.02)
        self.positions = self.embedding(c.max_len, c.dim, std=0.02)
        with torch.random.fork_rng(devices=[]):  # layer init from the seed, global RNG untouched
            torch.manual_seed(seed)
            layer = torch.nn.TransformerEncoderLayer(
                c.dim, c.n_heads, 4 * c.dim, c.dropout, activation="gelu", batch_first=True,
                norm_first=True,
            )  # fmt: skip
            self.encoder = torch.nn.TransformerEncoder(
                layer, c.n_layers, norm=torch.nn.LayerNorm(c.dim), enable_nested_tensor=False
            )
        self.drop = torch.nn.Dropout(c.dropout)
        self._windows: torch.Tensor | None = None

    # ------------------------------------------------------------------ encoding
    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """[b, L] item ids (left-padded with ``pad``) → hidden states [b, L, dim]."""
        b, L = seq.shape
        real = seq != self.pad
        x = self.items(seq) * (self.config.dim**0.5) + self.positions.weight[-L:]
        x = self.drop(x) * real.unsqueeze(-1)
        if self.causal:
            # allowed: earlier-or-same real keys; the diagonal always, so pad rows never see
            # an all-masked row (their outputs are ignored anyway)
            tri = torch.ones(L, L, dtype=torch.bool).tril()
            allowed = (tri & real.unsqueeze(1)) | torch.eye(L, dtype=torch.bool)
            mask = torch.zeros(b, L, L).masked_fill(~allowed, float("-inf"))
            mask = mask.repeat_interleave(self.config.n_heads, dim=0)
            return self.encoder(x, mask=mask)
        return self.encoder(x, src_key_padding_mask=~real)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.items.weight[: self.n_items].T

    def context(self, data: Interactions, split: str) -> np.ndarray:
        """[n_users, max_len] input for ranking; the last position's hidden state scores items."""
        return data.contexts(split, self.config.max_len, self.pad)

    def scorer(self, data: Interactions, split: str) -> Scorer:
        ctx = torch.from_numpy(self.context(data, split))
        return lambda users: self.logits(self.encode(ctx[users])[:, -1])

    def sequence_input(self, seqs: Sequence[Sequence[int]]) -> np.ndarray:
        """[len(seqs), max_len] model input for given item sequences (oldest first): each one's
        last items, left-padded, in the same layout :meth:`context` builds from a user's data."""
        return left_pad(seqs, self.config.max_len, self.pad)

    def score_sequences(self, seqs: Sequence[Sequence[int]], batch_size: int = 512) -> torch.Tensor:
        """Scores of all items [len(seqs), n_items] after each given sequence (oldest first).

        The same next-item scores :meth:`scorer` ranks with, for contexts that need not be a
        user's own training sequence (e.g. a preference sample's history). Eval mode, no grad,
        no masking; an empty sequence gives the scores of an all-padding context.
        """
        x = torch.from_numpy(self.sequence_input(seqs))
        was = self.training
        self.eval()
        with torch.no_grad():
            parts = [
                self.logits(self.encode(x[a : a + batch_size])[:, -1])
                for a in range(0, len(x), batch_size)
            ]
        self.train(was)
        return torch.cat(parts) if parts else torch.zeros(0, self.n_items)

    def user_embeddings(self, data: Interactions) -> np.ndarray:
        ctx = torch.from_numpy(self.context(data, "valid"))
        was = self.training
        self.eval()
        with torch.no_grad():
            out = torch.cat([self.encode(ctx[a : a + 512])[:, -1] for a in range(0, len(ctx), 512)])
        self.train(was)
        return out.numpy().astype(np.float32)

    # ------------------------------------------------------------------ training
    def prepare(self, data: Interactions) -> None:
        width = self.config.max_len + self.window_extra - 1
        self._windows = torch.from_numpy(data.windows(width, self.pad))

    def train_epoch(self, data: Interactions, opt, gen: torch.Generator) -> float:
        rows = self._windows[torch.randperm(len(self._windows), generator=gen)]
        total, n = 0.0, 0
        for a in range(0, len(rows), self.config.batch_size):
            loss = self.batch_loss(rows[a : a + self.config.batch_size], data, gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, n = total + loss.item(), n + 1
        return total / max(n, 1)

    def batch_loss(
        self, rows: torch.Tensor, data: Interactions, gen: torch.Generator
    ) -> torch.Tensor:
        raise NotImplementedError

    def next_item_loss(self, hidden: torch.Tensor, inp: torch.Tensor, tgt: torch.Tensor,
                       kind: str, gen: torch.Generator) -> torch.Tensor:  # fmt: skip
        """Next-item loss at every real input position: full softmax ("ce") or one sampled
        negative per position with binary cross-entropy ("bce", the SASRec paper's)."""
        valid = (inp != self.pad) & (tgt != self.pad)
        h, t = hidden[valid], tgt[valid]
        if kind == "ce":
            return F.cross_entropy(self.logits(h), t)
        neg = torch.randint(0, self.n_items, t.shape, generator=gen)
        pos_s = (h * self.items(t)).sum(-1)
        neg_s = (h * self.items(neg)).sum(-1)
        return F.binary_cross_entropy_with_logits(
            torch.cat([pos_s, neg_s]), torch.cat([torch.ones_like(pos_s), torch.zeros_like(neg_s)])
        )
