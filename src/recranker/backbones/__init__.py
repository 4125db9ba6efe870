"""Conventional recommender backbones: candidates, user embeddings and hint scores for RecRanker.

One module per model, one interface (:class:`~recranker.backbones.base.Backbone`), one training
loop (:func:`~recranker.backbones.training.fit`), one ranking/evaluation path
(:mod:`recranker.backbones.ranking`). torch is imported by the model modules only, so importing
this package (e.g. for :data:`MODELS`) stays light.

    model = build("mf", n_users, n_items, {"dim": 64}, seed=0)
    result = fit(model, data, patience=10)
    items, scores = masked_topk(model, data, "test", k=10)
"""

from __future__ import annotations

import importlib
from typing import Any

from recranker.errors import RecrankerError

# name -> (module, class); ranking backbones only (rating_mf is a hint function, not a ranker).
MODELS: dict[str, tuple[str, str]] = {
    "mostpop": ("mostpop", "MostPop"),
    "mf": ("mf", "MF"),
    "lightgcn": ("lightgcn", "LightGCN"),
    "mixgcf": ("mixgcf", "MixGCF"),
    "sgl": ("sgl", "SGL"),
    "sasrec": ("sasrec", "SASRec"),
    "bert4rec": ("bert4rec", "BERT4Rec"),
    "cl4srec": ("cl4srec", "CL4SRec"),
}


def model_class(name: str):
    if name not in MODELS:
        raise RecrankerError(f"unknown backbone '{name}' (known: {', '.join(MODELS)})")
    module, cls = MODELS[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def build(name: str, n_users: int, n_items: int, config: Any = None, seed: int = 0):
    """Instantiate backbone ``name``; ``config`` is its Config (``.config``) or a dict of its fields."""
    cls = model_class(name)
    if isinstance(config, dict):
        fields = set(cls.Config.model_fields)
        unknown = sorted(set(config) - fields)
        if unknown:
            raise RecrankerError(
                f"backbone {name}: unknown hyper-parameter(s) {', '.join(unknown)}"
                f" (known: {', '.join(sorted(fields))})"
            )
        config = cls.Config.model_validate(config)
    return cls(n_users, n_items, config, seed)


def __getattr__(attr: str):
    # Heavy (torch) helpers, resolved on first use.
    lazy = {
        "fit": "training",
        "FitResult": "training",
        "masked_topk": "ranking",
        "evaluate": "ranking",
        "candidates_frame": "ranking",
        "export": "export",
        "load": "base",
        "fit_predict_ratings": "rating_mf",
        "Interactions": "data",  # pandas/scipy: not needed to read the params schema (.config)
    }
    if attr in lazy:
        return getattr(importlib.import_module(f"{__name__}.{lazy[attr]}"), attr)
    raise AttributeError(attr)


__all__ = [
    "MODELS",
    "Interactions",
    "build",
    "candidates_frame",
    "evaluate",
    "export",
    "fit",
    "fit_predict_ratings",
    "load",
    "masked_topk",
    "model_class",
]
