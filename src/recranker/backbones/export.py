"""Write one trained backbone's outputs (CONTRACTS.md ``models/backbones/<ds>/<bb>/``).

The caller passes a fresh directory (the stage uses ``recranker.io.atomic_path(is_dir=True)``),
so the set of files appears at once or not at all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Backbone
from .data import SPLITS, Interactions
from .ranking import METRIC_KS, candidates_frame, evaluate
from .training import FitResult


def export(
    model: Backbone, data: Interactions, result: FitResult, directory: str | Path, top_k: int = 10
) -> dict:
    """Write weights.safetensors, config.json, candidates.parquet, user_emb.npy; return the metrics.

    The metrics (which include wall-clock timings) are not written here: the directory must be a
    pure function of data, params and seed, so that re-training never invalidates later stages.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save(directory)
    candidates_frame(model, data, top_k).to_parquet(directory / "candidates.parquet", index=False)
    np.save(
        directory / "user_emb.npy", np.ascontiguousarray(model.user_embeddings(data), np.float32)
    )
    metrics = {split: evaluate(model, data, split, ks=METRIC_KS) for split in SPLITS}
    metrics.update(result.as_dict())
    metrics["model"] = model.name
    metrics["top_k"] = top_k
    return metrics
