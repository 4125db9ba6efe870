"""Leakage checks — keep them forever.

* no training instruction of a user shows that user's valid or test item (by id or by title);
* training rows, hints included, do not change when valid/test ratings change;
* the hints of a training instruction come from a model that never saw that instruction's own
  labels (perturbing them leaves the hints unchanged — and the check is shown to catch a
  model fitted on all training rows);
* test hints come from a model fitted on split=train only (perturbing valid/test ratings
  leaves every test row unchanged — and a model fitted on all rows is shown to fail it).
"""

import json

import numpy as np
import pandas as pd
import pytest

from recranker.prompts.config import InstructConfig
from recranker.prompts.corpus import DatasetContext, make_corpus
from recranker.prompts.enhance import crossfit_predict, train_only_predict
from recranker.prompts.ranking_rows import build_test
from recranker.prompts.templates import DOMAINS
from recranker.prompts.text import RatingScale
from recranker.prompts.training import build_training, plan_training, training_hints

N_USERS, SHARED = 30, 90


def make_data(seed=0):
    """Each user's valid and test items are private to the user and carry unique titles."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(N_USERS):
        n = int(rng.integers(12, 28))
        items = list(rng.choice(SHARED, n - 2, replace=False)) + [SHARED + 2 * u, SHARED + 2 * u + 1]
        ts = np.sort(rng.choice(10**6, n, replace=False))
        ratings = rng.integers(1, 6, n).astype(float)
        split = ["train"] * (n - 2) + ["valid", "test"]
        rows += [(u, int(i), r, int(t), s) for i, t, r, s in zip(items, ts, ratings, split)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp", "split"])
    titles = [f"Shared film {i}" for i in range(SHARED)]
    for u in range(N_USERS):
        titles += [f"SECRET-VALID-{u}-END", f"SECRET-TEST-{u}-END"]
    return inter, pd.DataFrame({"item_id": np.arange(len(titles)), "title": titles})


def candidates(inter, k=5):
    rows = []
    for u in range(N_USERS):
        pool = [(u * 7 + j * 11) % SHARED for j in range(k - 1)] + [SHARED + 2 * u + 1]
        seen = set(inter.loc[(inter["user_id"] == u) & (inter["split"] != "test"), "item_id"])
        pool = [i for i in dict.fromkeys(pool) if i not in seen]
        rows += [(u, "test", r + 1, i, 10.0 - r) for r, i in enumerate(pool)]
    return pd.DataFrame(rows, columns=["user_id", "split", "rank", "item_id", "score"])


def cfg(**kw):
    base = {"listwise_size": 5, "history_len": 30, "enhance": True, "n_folds": 3, "pairwise_both_orders": False}
    return InstructConfig(**{**base, **kw})


CTX = DatasetContext(name="leak", domain=DOMAINS["movie"], scale=RatingScale(1, 5), like_threshold=4,
                     dislike_threshold=2)


def item_mean(train, query):
    means = train.groupby("item_id")["rating"].mean()
    return query["item_id"].map(means).fillna(train["rating"].mean()).to_numpy(float)


def rating_mf(n_items):
    from recranker.backbones.rating_mf import fit_predict_ratings

    return lambda tr, q: fit_predict_ratings(tr, q, N_USERS, n_items, dim=4, epochs=3, seed=0)


MULTISET = [(u, 2) for u in range(N_USERS)]


def perturb_heldout(inter, splits=("valid", "test"), seed=1):
    """Different ratings on the given splits, nothing else changed."""
    out = inter.copy()
    held = out["split"].isin(splits)
    out.loc[held, "rating"] = np.random.default_rng(seed).integers(1, 6, held.sum()).astype(float)
    assert (out.loc[held, "rating"] != inter.loc[held, "rating"]).any()
    return out


@pytest.mark.parametrize("negatives", ["uniform", "popular"])
def test_training_never_shows_a_users_valid_or_test_item(negatives):
    inter, items = make_data()
    c = cfg(shuffle_history=True, negatives=negatives)
    rows, _ = build_training(make_corpus(inter, items, CTX, c, 0), MULTISET, c, 0, item_mean)
    assert {r["task"] for r in rows} == {"pointwise", "pairwise", "listwise"}
    for r in rows:
        u = r["user_id"]
        private = {SHARED + 2 * u, SHARED + 2 * u + 1}
        assert not private & set(r["candidates"]) and not private & set(r["meta"]["history"])
        text = json.dumps(r["messages"]) + r["completion"]
        assert f"SECRET-VALID-{u}-END" not in text and f"SECRET-TEST-{u}-END" not in text


@pytest.mark.parametrize("model, negatives", [("item_mean", "uniform"), ("rating_mf", "uniform"),
                                             ("item_mean", "popular")])
def test_training_rows_ignore_valid_and_test_ratings(model, negatives):
    inter, items = make_data()
    fit = item_mean if model == "item_mean" else rating_mf(len(items))
    c = cfg(negatives=negatives)

    def build(data):
        rows, _ = build_training(make_corpus(data, items, CTX, c, 0), MULTISET, c, 0, fit)
        return json.dumps(rows, sort_keys=True)

    assert build(inter) == build(perturb_heldout(inter))


def _hints_after_perturbing_own_labels(corpus, plans, fit, folds_override=None):
    """For each plan: its hints after flipping the ratings of its own rated candidates."""
    train = corpus.train
    folds = corpus.train["fold"].to_numpy() if folds_override is None else folds_override
    out = []
    for p in plans:
        own = (train["user_id"] == p.user) & train["item_id"].isin(p.items)
        assert own.any()
        perturbed = train[["user_id", "item_id", "rating"]].copy()
        perturbed.loc[own, "rating"] = 6.0 - perturbed.loc[own, "rating"] + 0.5
        q = pd.DataFrame({"user_id": p.user, "item_id": p.items, "fold": p.fold})
        out.append(crossfit_predict(perturbed, folds, q, fit, corpus_folds(corpus)).tolist())
    return out


def corpus_folds(corpus):
    return int(corpus.train["fold"].max()) + 1


def test_training_hints_never_come_from_the_instructions_own_labels():
    inter, items = make_data()
    c = cfg()
    corpus = make_corpus(inter, items, CTX, c, 0)
    plans, _ = plan_training(corpus, MULTISET[:12], c, 0)
    plans = [p for p in plans if any(not np.isnan(r) for r in p.ratings)]
    clean = training_hints(corpus, plans, item_mean, c.n_folds)
    assert _hints_after_perturbing_own_labels(corpus, plans, item_mean) == clean
    # power: had the hint model been fitted on all training rows (a fold no query uses), the
    # same check would see the hints move
    leaky = np.full(len(corpus.train), -1)
    moved = _hints_after_perturbing_own_labels(corpus, plans, item_mean, folds_override=leaky)
    assert moved != clean
    # the real rating MF passes too (one plan per task, to stay fast)
    one_each = [next(p for p in plans if p.task == t) for t in ("pointwise", "pairwise", "listwise")]
    mf = rating_mf(len(items))
    assert _hints_after_perturbing_own_labels(corpus, one_each, mf) == training_hints(
        corpus, one_each, mf, c.n_folds)


def test_test_hints_use_a_model_fitted_on_train_only():
    inter, items = make_data()
    c = cfg()
    cand = candidates(inter)
    mf = rating_mf(len(items))

    def build(data, predict):
        cc = cand.copy()
        cc["rating_pred"] = predict(data, cc)
        return list(build_test(make_corpus(data, items, CTX, c, 0), cc, "mf", c, 0))

    def hints(rows):
        return [r["meta"]["hint"] for r in rows]

    train_only = lambda data, cc: train_only_predict(data, cc, mf)
    clean = build(inter, train_only)
    assert all(h is not None for h in hints(clean))
    # valid ratings are test-time history (shown), but no hint may move with them
    assert hints(build(perturb_heldout(inter), train_only)) == hints(clean)
    # test ratings are never shown nor used: the rows are byte-identical
    assert json.dumps(build(perturb_heldout(inter, ("test",)), train_only)) == json.dumps(clean)
    # power: a hint model fitted on every split would be caught
    everything = lambda data, cc: mf(data[["user_id", "item_id", "rating"]], cc[["user_id", "item_id"]])
    assert hints(build(inter, everything)) != hints(build(perturb_heldout(inter), everything))


def test_test_history_never_shows_the_test_item():
    inter, items = make_data()
    c = cfg(enhance=False)
    rows = list(build_test(make_corpus(inter, items, CTX, c, 0), candidates(inter), "mf", c, 0))
    for r in rows:
        u = r["user_id"]
        prefix = r["messages"][1]["content"][: r["meta"]["prefix_chars"]]
        assert f"SECRET-TEST-{u}-END" not in prefix and SHARED + 2 * u + 1 not in r["meta"]["history"]
        assert f"SECRET-VALID-{u}-END" in prefix  # valid is history at test time
