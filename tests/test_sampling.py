"""Adaptive user sampling: empirical frequencies match RecRanker's equations 2–4."""

import numpy as np
import pytest
from scipy.stats import chisquare

from recranker import sampling
from recranker.errors import RecrankerError

Q = np.array([1, 2, 3, 5, 8, 13, 21, 1, 34, 55, 4, 6])


def _fits(counts, expected_p, alpha=1e-3):
    """Chi-square goodness of fit on the support; zero-probability cells must be empty."""
    counts = np.asarray(counts)
    expected_p = np.asarray(expected_p, dtype=float)
    zero = expected_p == 0
    assert counts[zero].sum() == 0
    exp = expected_p[~zero] / expected_p[~zero].sum() * counts[~zero].sum()
    return chisquare(counts[~zero], exp).pvalue > alpha


def _blobs(sizes, seed=0):
    """Well separated Gaussian blobs; returns embeddings and the planted cluster of each user."""
    rng = np.random.default_rng(seed)
    centers = np.eye(len(sizes), 4) * 20
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return centers[labels] + rng.normal(scale=0.1, size=(len(labels), 4)), labels


def test_importance_weights_are_log_counts_and_single_interaction_users_get_zero():
    p = sampling.importance_probabilities(Q)
    w = np.log(Q.astype(float))
    assert np.allclose(p, w / w.sum())
    assert (p[Q == 1] == 0).all()
    with pytest.raises(RecrankerError):
        sampling.importance_probabilities(np.ones(5))


def test_importance_draws_match_equation_2():
    cfg = sampling.SamplingConfig(n_users=10, n_importance=20000, n_cluster=10, n_clusters=2)
    emb, _ = _blobs([6, 6])
    res = sampling.sample_users(Q, emb, cfg, seed=3)
    assert res.importance.sum() == 20000
    assert (res.importance[Q == 1] == 0).all()
    assert _fits(res.importance, np.log(Q.astype(float)))
    # a wrong formula (p ∝ q) is rejected by the same test: it has power
    assert not _fits(res.importance, Q.astype(float))


def test_cluster_draws_match_equation_3():
    sizes = [2, 4, 6]
    emb, planted = _blobs(sizes)
    q = np.full(12, 3)
    cfg = sampling.SamplingConfig(n_users=10, n_importance=10, n_cluster=30000, n_clusters=3)
    res = sampling.sample_users(q, emb, cfg, seed=5)
    # K-means recovers the planted clusters (up to relabelling)
    assert len({(a, b) for a, b in zip(res.cluster_labels, planted)}) == 3
    expected = np.array(sizes, dtype=float)[planted]
    assert np.allclose(sampling.cluster_probabilities(res.cluster_labels), expected / (expected.sum()))
    assert _fits(res.cluster, expected)
    assert not _fits(res.cluster, np.ones(12))


def test_final_draws_match_repetition_penalty_equation_4():
    emb, _ = _blobs([4, 8])
    cfg = sampling.SamplingConfig(n_users=40000, n_importance=30, n_cluster=30, n_clusters=2, penalty=0.5)
    res = sampling.sample_users(Q, emb, cfg, seed=11)
    m3 = res.importance + res.cluster
    assert m3.max() > 1, "the test needs repeated users"
    expected = m3 * 0.5 ** m3.astype(float)  # each of U3's M3(u) elements carries C^M3(u)
    assert _fits(res.counts, expected)
    assert not _fits(res.counts, np.where(m3 > 0, 0.5 ** m3.astype(float), 0.0))  # distinct-user sum
    assert not _fits(res.counts, (m3 > 0).astype(float))
    assert (res.counts[m3 == 0] == 0).all()  # only users of U3 can be drawn


def test_penalty_spreads_the_sample_over_more_users():
    """In the paper's regime (N1, N2, N below the number of users), the penalised final draw
    reaches more distinct users in expectation than drawing from U3 itself (p ∝ M3), and the
    realised sample has about that many."""
    rng = np.random.default_rng(0)
    q = rng.integers(1, 200, size=400)
    emb = rng.normal(size=(400, 4))
    cfg = sampling.SamplingConfig(n_users=150, n_importance=150, n_cluster=150, n_clusters=3,
                                  kmeans_n_init=1)
    res = sampling.sample_users(q, emb, cfg, seed=0)
    m3 = res.importance + res.cluster

    def expected_distinct(p):
        return float((1 - (1 - p / p.sum()) ** 150).sum())

    penalised = expected_distinct(sampling.repetition_probabilities(m3, 0.92))
    assert penalised > expected_distinct(m3.astype(float))
    assert abs((res.counts > 0).sum() - penalised) < 4 * np.sqrt(penalised)


def test_deterministic_by_seed():
    emb, _ = _blobs([4, 8])
    cfg = sampling.SamplingConfig(n_users=50, n_importance=50, n_cluster=50, n_clusters=2)
    a = sampling.sample_users(Q, emb, cfg, seed=7)
    b = sampling.sample_users(Q, emb, cfg, seed=7)
    c = sampling.sample_users(Q, emb, cfg, seed=8)
    for x, y in [(a.counts, b.counts), (a.importance, b.importance), (a.cluster, b.cluster)]:
        assert np.array_equal(x, y)
    assert not np.array_equal(a.counts, c.counts)


def test_uniform_mode_is_balanced():
    few = sampling.sample_users(Q, None, sampling.SamplingConfig(mode="uniform", n_users=5), seed=0)
    assert few.counts.sum() == 5 and few.counts.max() == 1
    many = sampling.sample_users(Q, None, sampling.SamplingConfig(mode="uniform", n_users=30), seed=0)
    assert many.counts.sum() == 30 and set(many.counts.tolist()) <= {2, 3}


def test_adaptive_needs_matching_embeddings():
    cfg = sampling.SamplingConfig()
    with pytest.raises(RecrankerError, match="embeddings"):
        sampling.sample_users(Q, None, cfg, seed=0)
    with pytest.raises(RecrankerError, match="rows"):
        sampling.sample_users(Q, np.zeros((3, 2)), cfg, seed=0)
    with pytest.raises(RecrankerError, match="n_clusters"):
        sampling.sample_users(Q, np.zeros((12, 2)), sampling.SamplingConfig(n_clusters=40), seed=0)


def test_metrics_and_users_json():
    assert sampling.gini(np.ones(5)) == 0
    assert sampling.gini(np.array([0, 0, 0, 1])) == pytest.approx(0.75)
    tail = sampling.long_tail_mask(np.array([5, 1, 9, 1]))
    assert tail.tolist() == [False, True, False, True]
    emb, _ = _blobs([4, 8])
    cfg = sampling.SamplingConfig(n_users=30, n_importance=30, n_cluster=30, n_clusters=2)
    res = sampling.sample_users(Q, emb, cfg, seed=2)
    out = sampling.users_json(res, Q, cfg)
    assert sum(u["multiplicity"] for u in out["users"]) == 30
    assert out["metrics"]["distinct_users"] == len(out["users"])
    for u in out["users"]:
        assert u["sources"] == {"importance": int(res.importance[u["user_id"]]),
                                "cluster": int(res.cluster[u["user_id"]])}
    assert sampling.multiset_from_json(out) == [(u["user_id"], u["multiplicity"]) for u in out["users"]]


def test_adaptive_sample_leans_to_active_users_where_uniform_does_not():
    """Importance (ln q) favours users with many interactions; eq. 4 over U3's elements keeps
    that lean (M·C^M grows with M), where a distinct-user normalisation (C^M) reverses it."""
    rng = np.random.default_rng(3)
    q = np.concatenate([np.full(300, 3), np.full(100, 400)])  # few very active users
    emb = rng.normal(size=(400, 4))
    cfg = sampling.SamplingConfig(n_users=3000, n_importance=3000, n_cluster=300, n_clusters=2,
                                  kmeans_n_init=1)
    res = sampling.sample_users(q, emb, cfg, seed=0)
    m = sampling.sampling_metrics(res, q)
    assert m["mean_interactions_uniform"] == pytest.approx(q.mean())
    assert m["mean_interactions_sampled"] > 1.15 * m["mean_interactions_uniform"]
    m3 = (res.importance + res.cluster).astype(float)
    distinct = np.where(m3 > 0, 0.92**m3, 0.0)
    assert (distinct / distinct.sum()) @ q < m["mean_interactions_sampled"]
