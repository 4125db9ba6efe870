"""The interface every backbone implements, and what they share (init, BPR sampling, save/load).

A backbone is a ``torch.nn.Module`` with a dataclass ``Config``. The shared loop in
:mod:`recranker.backbones.training` calls :meth:`Backbone.train_epoch`; ranking code calls
:meth:`Backbone.scorer`, which may precompute (graph propagation, sequence encoding) once and
then score any batch of users against all items. Everything random draws from the
``torch.Generator`` passed in, seeded from the ``seed`` argument.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from recranker.errors import RecrankerError

from .config import BaseConfig
from .data import Interactions

Scorer = Callable[[torch.Tensor], torch.Tensor]  # user ids [b] -> scores [b, n_items]


class Backbone(torch.nn.Module):
    name: ClassVar[str]
    Config: ClassVar[type] = BaseConfig
    trainable: ClassVar[bool] = True

    def __init__(self, n_users: int, n_items: int, config: Any = None, seed: int = 0):
        super().__init__()
        self.n_users, self.n_items, self.seed = int(n_users), int(n_items), int(seed)
        self.config = config if config is not None else self.Config()
        # Parameter init draws from its own generator, so building a model is reproducible
        # whatever else touched the global RNG.
        self.init_gen = torch.Generator().manual_seed(self.seed)

    # ------------------------------------------------------------------ to implement
    def prepare(self, data: Interactions) -> None:
        """Build data-dependent buffers (graph, sequences). Called before training and scoring."""

    def train_epoch(
        self, data: Interactions, opt: torch.optim.Optimizer, gen: torch.Generator
    ) -> float:
        """One pass over the training data; returns the mean loss."""
        raise NotImplementedError

    def scorer(self, data: Interactions, split: str) -> Scorer:
        """A function scoring all items for a batch of users, with the context known before
        ``split`` (sequential models add the valid item for ``test``). No masking here."""
        raise NotImplementedError

    def user_embeddings(self, data: Interactions) -> np.ndarray:
        """float32 [n_users, d]: the representation the model ranks with, from training data."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared
    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.config.lr)

    def embedding(self, n: int, dim: int, std: float = 0.1) -> torch.nn.Embedding:
        emb = torch.nn.Embedding(n, dim)
        torch.nn.init.normal_(emb.weight, 0.0, std, generator=self.init_gen)
        return emb

    def config_dict(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "seed": self.seed,
            "hyper_parameters": self.config.model_dump(),
        }

    def save(self, directory: str | Path) -> None:
        """``weights.safetensors`` + ``config.json`` into an existing directory."""
        from safetensors.torch import save_file

        directory = Path(directory)
        tensors = {k: v.detach().contiguous().clone() for k, v in self.state_dict().items()}
        save_file(tensors, str(directory / "weights.safetensors"))
        (directory / "config.json").write_text(
            json.dumps(self.config_dict(), indent=2, sort_keys=True) + "\n"
        )


def load(directory: str | Path, data: Interactions | None = None) -> Backbone:
    """Rebuild a saved backbone (``config.json`` + ``weights.safetensors``).

    ``data`` (the same interactions it was trained on) is needed by models whose scores depend
    on the graph or the sequences; it is passed to :meth:`Backbone.prepare`.
    """
    from recranker.io import read_safetensors

    from . import build

    directory = Path(directory)
    try:
        cfg = json.loads((directory / "config.json").read_text())
    except FileNotFoundError:
        raise RecrankerError(f"{directory}/config.json: not found") from None
    model = build(
        cfg["model"], cfg["n_users"], cfg["n_items"], cfg["hyper_parameters"], cfg["seed"]
    )
    if data is not None:
        model.prepare(data)
    state = read_safetensors(directory / "weights.safetensors")
    model.load_state_dict(state, strict=True)
    return model


# ---------------------------------------------------------------------- shared samplers
def bpr_batches(
    data: Interactions, batch_size: int, gen: torch.Generator, n_neg: int = 1
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One epoch of (user, positive, negatives[b, n_neg]) batches over shuffled training pairs.

    Negatives are uniform over items the user has not trained on: drawn in one vectorised shot,
    collisions re-drawn (a few rounds suffice at recommender densities).
    """
    users = torch.from_numpy(data.train_users)
    items = torch.from_numpy(data.train_items)
    perm = torch.randperm(len(users), generator=gen)
    users, items = users[perm], items[perm]
    neg = sample_negatives(data, users, n_neg, gen)
    return [
        (users[i : i + batch_size], items[i : i + batch_size], neg[i : i + batch_size])
        for i in range(0, len(users), batch_size)
    ]


# Up to this many user × item cells, "has the user trained on the item?" is a dense bool table
# (one gather per lookup, 128 MB at most); beyond it, a binary search in the sorted pair keys.
_DENSE_SEEN_CELLS = 1 << 27


def _seen(data: Interactions):
    """``seen(users, items) -> bool tensor``: whether each pair is a training interaction."""
    lookup = getattr(data, "_bpr_seen", None)
    if lookup is None:
        users, items = torch.from_numpy(data.train_users), torch.from_numpy(data.train_items)
        if data.n_users * data.n_items <= _DENSE_SEEN_CELLS:
            table = torch.zeros(data.n_users, data.n_items, dtype=torch.bool)
            table[users, items] = True

            def lookup(u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
                return table[u, i]
        else:
            keys = torch.unique(users * data.n_items + items)  # sorted

            def lookup(u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
                k = u * data.n_items + i
                return keys[torch.searchsorted(keys, k).clamp_max(len(keys) - 1)] == k

        object.__setattr__(data, "_bpr_seen", lookup)  # cache on the frozen dataclass
    return lookup


def sample_negatives(
    data: Interactions, users: torch.Tensor, n_neg: int, gen: torch.Generator, rounds: int = 20
) -> torch.Tensor:
    """[len(users), n_neg] item ids not in each user's training items (uniform).

    Drawn in one shot; each round re-draws (in flat order) only the draws that hit a training
    item and re-checks only those.
    """
    seen = _seen(data)
    neg = torch.randint(0, data.n_items, (len(users), n_neg), generator=gen)
    flat = neg.view(-1)
    u = users.repeat_interleave(n_neg)
    todo = torch.arange(flat.numel())
    for _ in range(rounds):
        todo = todo[seen(u[todo], flat[todo])]
        if not len(todo):
            break
        flat[todo] = torch.randint(0, data.n_items, (len(todo),), generator=gen)
    return neg
