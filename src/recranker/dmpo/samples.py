"""DMPO few-shot samples from ratings, as the paper builds them (Bai et al., 2024, §4.1–4.2).

Labels: rating > ``positive_above`` (3) is positive, ≤ is negative; only users with ≥ 5 of each
take part. A *sample* is (history, one positive ``p``, k negatives):

* ``p`` is one of the user's positives (the most recent first; further samples of the same user
  use earlier positives); the history is the ≤ 40 interactions *before* ``p`` in time (titles,
  oldest first); the negatives are drawn from the user's negatives outside that history;
* Equation 3's pairwise prompts: one prompt ``x_i`` per negative ``n_i`` — the same history, the
  two candidates ``p`` and ``n_i`` in random order — with chosen ``"<p>, <n_i>"`` and rejected
  ``"<n_i>, <p>"``. A record holds its k pairs in ``pairs``; the loss averages over them.

Training samples have ``k_negatives`` pairs; valid and test samples are single pairs (the paper's
100 valid / 1,000 test pairs).

Splits and leakage: eligible users are shuffled (seeded) and split *by user*. Test users come
from the back of that order (up to ``test_per_user`` pairs each, latest positives first) until
there are ``n_test`` pairs, then valid users (one pair each) until ``n_valid``; train users (one
sample each) come from the front until ``n_train``. So the test and valid pairs are the same for
every ``n_train`` (the few-shot sizes are compared on one test set). A user is in one split only, so no item of a user's valid/test samples reaches that user's training
samples (:func:`check_no_leakage` asserts it on the written data).

Record schema (JSONL, also what the LLaMA-Factory importer writes)::

    {"id", "dataset", "user_id", "pairs": [{"prompt": [chat messages], "chosen", "rejected"}],
     "meta": {"positive", "negatives", "history", "split"}}   # item ids; meta may be {} if imported
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from recranker.dmpo.config import PreferenceConfig
from recranker.errors import RecrankerError
from recranker.prompts.templates import Domain, system_text
from recranker.prompts.text import clean_text


def eligible_users(interactions: pd.DataFrame, cfg: PreferenceConfig) -> np.ndarray:
    """Users with ≥ min_positives positives and ≥ min_negatives negatives (sorted ids)."""
    pos = interactions["rating"].to_numpy() > cfg.positive_above
    g = pd.DataFrame({"u": interactions["user_id"].to_numpy(), "pos": pos}).groupby("u")["pos"]
    n_pos, n_all = g.sum(), g.size()
    ok = (n_pos >= cfg.min_positives) & ((n_all - n_pos) >= cfg.min_negatives)
    return np.sort(ok.index[ok.to_numpy()].to_numpy(np.int64))


def pair_prompt(history: Sequence[str], first: str, second: str, domain: Domain) -> list[dict]:
    """The pairwise ranking prompt: the history, then the two candidates in the order given."""
    lines = "".join(f"- {t}\n" for t in history)
    user = (
        f"The user has interacted with these {domain.plural} (oldest first):\n{lines}"
        f"\nRank the two candidate {domain.plural} by how much the user would like them, best first:\n"
        f"- {first}\n- {second}\nAnswer with the two titles in that order, separated by a comma."
    )
    return [{"role": "system", "content": system_text(domain)}, {"role": "user", "content": user}]


def answer(first: str, second: str) -> str:
    return f"{first}, {second}"


def _samples_of_user(df_u: pd.DataFrame, cfg, domain: Domain, titles, rng, n_max: int, k: int) -> list[dict]:
    """Up to ``n_max`` samples with k negatives of one user (chronological rows), latest positive first."""
    items = df_u["item_id"].to_numpy(np.int64)
    positive = df_u["rating"].to_numpy() > cfg.positive_above
    out = []
    for pos_at in np.flatnonzero(positive)[::-1]:
        if len(out) == n_max:
            break
        hist = items[max(0, pos_at - cfg.history_len) : pos_at]
        if len(hist) < cfg.min_history:
            continue
        pos = int(items[pos_at])
        neg_pool = np.setdiff1d(items[~positive], np.append(hist, pos))
        if len(neg_pool) < k:
            continue
        negs = [int(n) for n in rng.choice(neg_pool, size=k, replace=False)]
        hist_t = [titles[i] for i in hist]
        pairs = []
        for n in negs:
            shown = (titles[pos], titles[n]) if rng.random() < 0.5 else (titles[n], titles[pos])
            pairs.append({"prompt": pair_prompt(hist_t, *shown, domain),
                          "chosen": answer(titles[pos], titles[n]), "rejected": answer(titles[n], titles[pos])})
        out.append({"pairs": pairs, "meta": {"positive": pos, "negatives": negs, "history": [int(i) for i in hist]}})
    return out


def build_preferences(
    interactions: pd.DataFrame, items: pd.DataFrame, cfg: PreferenceConfig, seed: int, *, dataset: str,
    domain: Domain,
) -> dict[str, list[dict]]:
    """``{"train": [...], "valid": [...], "test": [...]}`` preference records (see module doc) of
    DATASET, its prompts worded for DOMAIN."""
    df = interactions[["user_id", "item_id", "rating", "timestamp"]]
    df = df.iloc[np.lexsort((df["timestamp"].to_numpy(), df["user_id"].to_numpy()))]
    n_items = int(max(items["item_id"].max(), df["item_id"].max())) + 1
    titles = [f"Item {i}" for i in range(n_items)]
    for i, t in zip(items["item_id"].tolist(), items["title"].tolist()):
        titles[i] = clean_text(t, cfg.max_title_chars) or f"Item {i}"

    users = eligible_users(df, cfg)
    order = [int(u) for u in np.random.default_rng(seed).permutation(users)]
    by_user = {int(u): g for u, g in df.groupby("user_id", sort=True)}

    def samples(u: int, n_max: int, k: int) -> list[dict]:
        urng = np.random.default_rng([seed & 0xFFFFFFFF, 7, u])  # per user: order-independent
        return _samples_of_user(by_user[u], cfg, domain, titles, urng, n_max, k)

    def row(split: str, u: int, j: int, s: dict) -> dict:
        return {"id": f"{dataset}/dmpo/{split}/u{u}/{j}", "dataset": dataset, "user_id": u,
                "pairs": s["pairs"], "meta": {**s["meta"], "split": split}}  # fmt: skip

    # Test, then valid, users come from the back of the order and train users from the front, so the
    # test and valid pairs do not depend on n_train (the few-shot sizes share them).
    out: dict[str, list[dict]] = {}
    back, front = len(order), 0
    for split, target, per_user in (("test", cfg.n_test, cfg.test_per_user), ("valid", cfg.n_valid, 1)):
        rows: list[dict] = []
        while len(rows) < target and back > 0:  # users without a sample are skipped
            back -= 1
            u = order[back]
            rows += [row(split, u, j, s) for j, s in enumerate(samples(u, min(per_user, target - len(rows)), 1))]
        out[split] = rows
    rows = []
    while len(rows) < cfg.n_train and front < back:
        u = order[front]
        front += 1
        rows += [row("train", u, 0, s) for s in samples(u, 1, cfg.k_negatives)]
    out["train"] = rows
    short = [(split, n) for split, n in (("train", cfg.n_train), ("valid", cfg.n_valid), ("test", cfg.n_test))
             if len(out[split]) < n]
    if short:
        split, n = short[0]
        raise RecrankerError(
            f"preferences: {len(users)} eligible users give {len(out[split])} {split} samples, n_{split} is {n} "
            "(test_per_user per test user, one per valid/train user); lower preferences.n_train/n_valid/n_test "
            "or the thresholds, or raise preferences.test_per_user"
        )
    return {split: out[split] for split in ("train", "valid", "test")}


def record_items(record: dict) -> set[int]:
    """Every item id a generated record shows (history, positive, negatives)."""
    m = record.get("meta") or {}
    return {*m.get("history", []), *([m["positive"]] if "positive" in m else []), *m.get("negatives", [])}


def check_no_leakage(splits: dict[str, list[dict]]) -> None:
    """Raise if an item of a user's valid/test samples appears in that user's training samples."""
    train_items: dict[Any, set[int]] = {}
    for r in splits.get("train", []):
        train_items.setdefault(r.get("user_id"), set()).update(record_items(r))
    for split in ("valid", "test"):
        for r in splits.get(split, []):
            shared = train_items.get(r.get("user_id"), set()) & record_items(r)
            if r.get("user_id") is not None and shared:
                raise RecrankerError(f"preferences: {r['id']} shares item {min(shared)} with user "
                                     f"{r['user_id']}'s training samples")  # fmt: skip


def sft_rows(pref_rows: Sequence[dict]) -> list[dict]:
    """TALLRec-style SFT records (instruction schema: ``messages`` + ``completion``) of the training
    samples: one per pairwise prompt, answer = the chosen order "<positive, negative>"."""
    return [
        {"id": f"{r['id']}/{i}", "dataset": r.get("dataset", ""), "task": "dmpo-sft", "user_id": r.get("user_id"),
         "messages": p["prompt"], "completion": p["chosen"]}
        for r in pref_rows for i, p in enumerate(r["pairs"])
    ]  # fmt: skip


def preference_stats(splits: dict[str, list[dict]]) -> dict:
    def hist(r):
        return len((r.get("meta") or {}).get("history", []))

    return {
        split: {
            "samples": len(rows),
            "users": len({r.get("user_id") for r in rows}),
            "k_negatives": sorted({len(r["pairs"]) for r in rows}),
            "mean_history": float(np.mean([hist(r) for r in rows])) if rows else 0.0,
        }
        for split, rows in splits.items()
    }


def subsample(rows: list[dict], limit: int, seed: int) -> list[dict]:
    """At most ``limit`` rows (0 = all), a seeded random subset in file order."""
    if not limit or len(rows) <= limit:
        return rows
    keep = np.sort(np.random.default_rng(seed).choice(len(rows), size=limit, replace=False))
    return [rows[i] for i in keep]
