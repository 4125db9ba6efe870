"""Conventional backbones on the DMPO preference test pairs (DMPO paper, Table 2).

A preference test record (:mod:`recranker.dmpo.samples`) shows one user's history, one positive
and k negatives. Here a conventional recommender scores the same candidates, and the scores go
through :func:`recranker.dmpo.evaluate.preference_metrics`, so AUC, pairwise and top-1
accuracy are computed exactly as for the LLMs (positive first, label 1; ties are not wins).

Leakage. The positives (and negatives) are the users' own *training* interactions, which the
regular ``backbone`` stage trains on. :func:`drop_after_positives` therefore removes, for every
user with a test record, all of that user's interactions at or after the earliest positive of
their records (by the timestamp of the user's interaction with the positive item; timestamp ties
are removed too), whatever their split: the positive, every later negative, and the user's valid
/ test items (which would otherwise steer early stopping). The user and item id spaces stay the
same. Negatives *older* than the positive remain training interactions, as they are part of what
the user did before it.

Scoring (:func:`score_preference_records`):

* sequential backbones (SASRec, BERT4Rec, CL4SRec) score the candidates after the record's own
  ``meta.history`` (the same items, oldest first, that the LLM prompt shows), via
  :meth:`~recranker.backbones.sequential.SequentialBackbone.score_sequences`;
* the others (MostPop, MF, LightGCN, MixGCF, SGL) score them with the user's learned
  representation (:meth:`~recranker.backbones.base.Backbone.scorer`), which after the cut only
  knows the user's interactions before the positive.

Pure library: no params.yaml, no DVC paths; torch is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from recranker.errors import RecrankerError

METRIC_KEYS = ("auc", "pairwise_accuracy", "top1_accuracy", "n_samples")


def _int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _fields(record: dict, i: int) -> tuple[int, int, list[int], list[int]]:
    """(user, positive, negatives, history) of a test record, validated."""
    where = f"preference record {record.get('id', i)!s}"
    meta = record.get("meta")
    user = record.get("user_id")
    if not _int(user) or not isinstance(meta, dict):
        raise RecrankerError(
            f"{where}: needs an integer 'user_id' and a 'meta' object (the `preferences` stage's "
            "records; imported LLaMA-Factory data has no item ids)"
        )
    pos, negs, hist = meta.get("positive"), meta.get("negatives"), meta.get("history")
    if not _int(pos):
        raise RecrankerError(f"{where}: meta.positive must be an item id")
    for key, ids in (("negatives", negs), ("history", hist)):
        if not isinstance(ids, list) or not all(_int(x) for x in ids):
            raise RecrankerError(f"{where}: meta.{key} must be a list of item ids")
    if not negs:
        raise RecrankerError(f"{where}: meta.negatives is empty")
    pairs = record.get("pairs")
    if isinstance(pairs, list) and len(pairs) != len(negs):
        raise RecrankerError(
            f"{where}: {len(negs)} meta.negatives but {len(pairs)} pairs "
            "(the LLMs would be scored on other pairs)"
        )
    return int(user), int(pos), [int(x) for x in negs], [int(x) for x in hist]


def positive_cutoffs(interactions: pd.DataFrame, records: Sequence[dict]) -> dict[int, int]:
    """``{user: timestamp}`` of the earliest test positive of every user with a test record."""
    if "timestamp" not in interactions.columns:
        raise RecrankerError("interactions: a 'timestamp' column is needed to remove leakage")
    rows = [_fields(r, i)[:2] for i, r in enumerate(records)]
    if not rows:
        return {}
    first = (
        interactions.groupby(["user_id", "item_id"], sort=False)["timestamp"].min()
        if len(interactions)
        else pd.Series(dtype=np.int64)
    )
    out: dict[int, int] = {}
    for i, (u, p) in enumerate(rows):
        try:
            ts = int(first.loc[(u, p)])
        except KeyError:
            rid = records[i].get("id", i)
            raise RecrankerError(
                f"preference record {rid}: user {u} has no interaction with its positive item {p} "
                "(preference data from another dataset or an older prepare run?)"
            ) from None
        out[u] = min(ts, out.get(u, ts))
    return out


def drop_after_positives(interactions: pd.DataFrame, records: Sequence[dict]) -> pd.DataFrame:
    """``interactions`` without any interaction of a test user at or after that user's earliest
    test positive (see the module doc). Other users' rows, the columns and the ids are kept."""
    cut = positive_cutoffs(interactions, records)
    if not cut:
        return interactions.reset_index(drop=True)
    limit = interactions["user_id"].map(pd.Series(cut, dtype=np.float64))
    keep = limit.isna().to_numpy() | (
        interactions["timestamp"].to_numpy(np.float64) < limit.to_numpy()
    )
    return interactions.loc[keep].reset_index(drop=True)


def score_preference_records(
    model, data, records: Sequence[dict], batch_size: int = 512
) -> list[dict]:
    """One dict per record for ``preference_metrics``: ``labels`` [1, 0, ...], ``scores`` of
    [positive, *negatives] (meta order, i.e. the order of the ``rejected`` answers),
    ``candidates`` (those item ids), ``truncated`` (the history was longer than a sequential
    model's input), ``index`` and ``id``. ``model`` is a fitted backbone, ``data`` what it was
    fitted on."""
    import torch

    from recranker.backbones.sequential import SequentialBackbone

    fields = [_fields(r, i) for i, r in enumerate(records)]
    for i, (u, p, negs, hist) in enumerate(fields):
        where = f"preference record {records[i].get('id', i)}"
        if not 0 <= u < model.n_users:
            raise RecrankerError(f"{where}: user {u} outside 0..{model.n_users - 1}")
        bad = [x for x in (p, *negs, *hist) if not 0 <= x < model.n_items]
        if bad:
            raise RecrankerError(f"{where}: item {bad[0]} outside 0..{model.n_items - 1}")
    sequential = isinstance(model, SequentialBackbone)
    was = model.training
    model.eval()
    out: list[dict] = []
    with torch.no_grad():
        score_users = None if sequential else model.scorer(data, "valid")
        for a in range(0, len(fields), batch_size):
            chunk = fields[a : a + batch_size]
            if sequential:
                hists = [f[3] for f in chunk]
                kept = (model.sequence_input(hists) < model.n_items).sum(axis=1)  # real items
                truncated = [int(k) < len(h) for k, h in zip(kept, hists)]
                full = model.score_sequences(hists, batch_size=batch_size)
            else:
                truncated = [False] * len(chunk)
                full = score_users(torch.tensor([f[0] for f in chunk], dtype=torch.long))
            full = full.float().numpy()
            for j, (_, p, negs, _) in enumerate(chunk):
                cands = [p, *negs]
                i = a + j
                out.append({
                    "index": i,
                    "id": records[i].get("id"),
                    "candidates": cands,
                    "labels": [1] + [0] * len(negs),
                    "scores": [float(s) for s in full[j, cands]],
                    "truncated": truncated[j],
                })  # fmt: skip
    model.train(was)
    return out


def fit_and_score(
    name: str,
    interactions: pd.DataFrame,
    records: Sequence[dict],
    n_users: int,
    n_items: int,
    hyper: Any = None,
    *,
    patience: int = 10,
    eval_every: int = 1,
    seed: int = 0,
    log: Callable[[dict[str, float]], None] | None = None,
):
    """Train backbone ``name`` on the leakage-free interactions and score ``records``.

    ``interactions`` is the prepared frame (user_id, item_id, timestamp, split, ...); the records'
    leakage is removed here (:func:`drop_after_positives`), then the model is built and trained
    as the ``backbone`` stage does (:func:`recranker.backbones.build`, ``hyper`` = its config
    dataclass or dict; :func:`recranker.backbones.training.fit`: split=train, early stopping on
    the valid item of the users that keep one). Returns ``(scored, fit_result)``: the
    per-record dicts of :func:`score_preference_records` and the
    :class:`~recranker.backbones.training.FitResult`.
    """
    from recranker.backbones import Interactions, build
    from recranker.backbones.training import fit

    if not records:
        raise RecrankerError(f"pref-backbone {name}: no preference test records to score")
    train = drop_after_positives(interactions, records)
    data = Interactions.from_frame(train, n_users, n_items)
    if not (data.valid_items >= 0).any():
        raise RecrankerError(
            f"pref-backbone {name}: after removing the test users' later interactions no user "
            "keeps a valid item for early stopping"
        )
    model = build(name, n_users, n_items, hyper, seed=seed)
    result = fit(model, data, patience=patience, eval_every=eval_every, seed=seed, log=log)
    return score_preference_records(model, data, records), result


def backbone_metrics(scored: Sequence[dict], result) -> dict[str, Any]:
    """``{"auc", "pairwise_accuracy", "top1_accuracy", "n_samples", "epochs"}`` (the training time
    is ``result.timings()``, kept apart: it changes on every run)."""
    from recranker.dmpo.evaluate import preference_metrics

    m = preference_metrics(scored)
    return {**{k: m[k] for k in METRIC_KEYS}, "epochs": int(result.epochs)}


__all__ = [
    "METRIC_KEYS",
    "backbone_metrics",
    "drop_after_positives",
    "fit_and_score",
    "positive_cutoffs",
    "score_preference_records",
]
