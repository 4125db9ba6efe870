"""The training loop all backbones share: epochs, periodic validation, early stopping.

Model selection uses NDCG@10 on the valid split (full ranking, train items masked). Patience
counts evaluations without improvement; the best weights are restored at the end, so the model
returned is the one the metrics and candidates are computed from.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .base import Backbone
from .data import Interactions
from .ranking import evaluate

SELECT_METRIC = "NDCG@10"


@dataclass
class FitResult:
    epochs: int  # epochs actually run
    best_epoch: int  # epoch whose weights were kept (0 = untrained)
    best_valid: float  # SELECT_METRIC at best_epoch
    train_seconds: float  # time in train_epoch only
    eval_seconds: float  # time in validation
    history: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict:
        """What the fit found: the same for the same data and seed (no wall-clock times)."""
        return {
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "best_valid_" + SELECT_METRIC: self.best_valid,
        }

    def timings(self) -> dict:
        """Wall-clock times: apart from :meth:`as_dict`, so that outputs other steps read stay
        byte-identical on a re-run."""
        return {
            "train_seconds": round(self.train_seconds, 3),
            "eval_seconds": round(self.eval_seconds, 3),
            "sec_per_epoch": round(self.train_seconds / max(self.epochs, 1), 4),
        }


def fit(
    model: Backbone,
    data: Interactions,
    *,
    max_epochs: int | None = None,
    patience: int = 10,
    eval_every: int = 1,
    seed: int | None = None,
    log: Callable[[dict[str, float]], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``data``'s training split and keep the best-validating weights.

    ``seed`` (default: the model's) seeds a ``torch.Generator`` for sampling and
    ``torch.manual_seed`` for dropout, which draws from the global RNG.
    """
    seed = model.seed if seed is None else seed
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    model.prepare(data)
    if not model.trainable:
        return FitResult(0, 0, evaluate(model, data, "valid", ks=(10,))[SELECT_METRIC], 0.0, 0.0)
    max_epochs = model.config.max_epochs if max_epochs is None else max_epochs
    opt = model.make_optimizer()
    best_state, best, best_epoch, bad = None, -1.0, 0, 0
    train_s = eval_s = 0.0
    history: list[dict[str, float]] = []
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        t0 = time.perf_counter()
        model.train()
        loss = model.train_epoch(data, opt, gen)
        train_s += time.perf_counter() - t0
        row = {"epoch": epoch, "loss": float(loss)}
        if epoch % eval_every == 0 or epoch == max_epochs:
            t0 = time.perf_counter()
            val = evaluate(model, data, "valid", ks=(10,))[SELECT_METRIC]
            eval_s += time.perf_counter() - t0
            row["valid_" + SELECT_METRIC] = val
            if val > best:
                best, best_epoch, bad = val, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad += 1
        history.append(row)
        if log is not None:
            log(row)
        if bad >= patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return FitResult(epoch, best_epoch, best, train_s, eval_s, history)
