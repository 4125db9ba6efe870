"""The synthetic ML-100K-format generator: deterministic, long-tailed, learnable, readable."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from recranker.data import prepare, read_raw, synthesize, write_synthetic
from recranker.errors import RecrankerError


def _gini(counts: np.ndarray) -> float:
    c = np.sort(counts.astype(float))
    n = len(c)
    return float((2 * np.arange(1, n + 1) - n - 1) @ c / (n * c.sum()))


def test_same_seed_same_bytes(tmp_path):
    a = write_synthetic(tmp_path / "a", 50, 80, 1000, seed=7)
    b = write_synthetic(tmp_path / "b", 50, 80, 1000, seed=7)
    c = write_synthetic(tmp_path / "c", 50, 80, 1000, seed=8)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert a[0].read_bytes() != c[0].read_bytes()
    assert {p.name for p in a} == {"u.data", "u.item"}


def test_readable_by_the_ml100k_reader_with_exact_sizes(tmp_path):
    write_synthetic(tmp_path, 60, 90, 1500, seed=1)
    raw = read_raw("ml-100k", tmp_path)
    r = raw.ratings
    assert len(r) == 1500 and r["user"].nunique() == 60 and len(raw.items) == 90
    assert set(r["rating"]) <= {1.0, 2.0, 3.0, 4.0, 5.0} and r["rating"].nunique() == 5
    assert not r.duplicated(["user", "item"]).any()
    assert (r.groupby("user").size() >= 5).all()
    assert (np.diff(r["timestamp"].to_numpy()) >= 0).all()  # file in time order
    per_user = r.groupby("user")["timestamp"].apply(
        lambda s: s.is_monotonic_increasing and s.is_unique
    )
    assert per_user.all()
    assert any(not t.isascii() for t in raw.items["title"])  # exercises the Latin-1 path
    assert (raw.items["genres"].str.len() > 0).all() and raw.items["year"].notna().all()
    p = prepare(raw)
    assert p.stats["splits"] == {"train": 1500 - 120, "valid": 60, "test": 60}


def test_long_tail():
    ratings, _ = synthesize(200, 300, 6000, seed=0)
    counts = ratings["item"].value_counts().to_numpy()
    assert _gini(counts) > 0.3
    top = np.sort(counts)[::-1]
    assert top[: len(top) // 10].sum() > 0.25 * top.sum()  # top 10% of items: > 25% of ratings


def _hr_at_10(seed: int, affinity: float) -> tuple[float, float]:
    """HR@10 on the leave-one-out test item: rank-8 SVD of train vs. popularity."""
    ratings, items = synthesize(200, 300, 6000, seed=seed, affinity=affinity)
    from recranker.data import RawData
    from recranker.data.raw import ratings_frame

    raw = RawData(
        "ml-100k",
        ratings_frame(
            ratings["user"].astype(str),
            ratings["item"].astype(str),
            ratings["rating"],
            ratings["timestamp"],
        ),
        items.assign(item=items["item"].astype(str))[["item", "title"]],
        (1.0, 5.0),
    )
    p = prepare(raw)
    inter = p.interactions
    train = inter[inter["split"] == "train"]
    test = inter[inter["split"] == "test"].sort_values("user_id")["item_id"].to_numpy()
    x = np.zeros((p.stats["users"], p.stats["items"]))
    x[train["user_id"], train["item_id"]] = 1.0
    with threadpool_limits(1):  # tiny matrix: BLAS threads only contend on a busy machine
        u, s, vt = np.linalg.svd(x, full_matrices=False)
    hits = []
    for scores in ((u[:, :8] * s[:8]) @ vt[:8], np.tile(x.sum(0), (len(x), 1))):
        scores = np.where(x > 0, -np.inf, scores)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
        hits.append(float(np.mean([t in row for t, row in zip(test, top)])))
    return hits[0], hits[1]


def test_learnable_latent_factors_beat_popularity():
    svd, pop = np.mean([_hr_at_10(seed, 2.0) for seed in range(2)], axis=0)
    assert svd > pop + 0.05, (svd, pop)
    # Control: without the latent affinity, factors add nothing over popularity.
    svd0, pop0 = np.mean([_hr_at_10(seed, 0.0) for seed in range(2)], axis=0)
    assert svd0 < pop0 + 0.03, (svd0, pop0)


def test_ratings_depend_on_the_factors():
    ratings, _ = synthesize(150, 200, 4000, seed=2)
    by_item = ratings.groupby("item")["rating"].mean()
    # Item means differ far more than binomial noise would make them (item bias + match).
    assert by_item.std() > 0.3


@pytest.mark.parametrize("args", [(0, 10, 10), (10, 3, 20), (10, 20, 10), (10, 20, 201)])
def test_bad_sizes(args):
    with pytest.raises(RecrankerError, match="synthesize: n_"):
        synthesize(*args)
