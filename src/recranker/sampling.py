"""Adaptive user sampling (RecRanker §3.1, equations 2–4) and the uniform ablation.

Which users become instruction-tuning data decides what the LLM learns, so RecRanker draws them
from three distributions:

1. importance-aware (eq. 2): ``w_u = ln(q_u)`` with ``q_u`` the user's number of *training*
   interactions, ``p_u = w_u / Σ w``; a multiset ``U1`` of size ``N1`` is drawn with
   replacement. A user with ``q_u = 1`` has ``ln 1 = 0`` and is never drawn here (there is
   nothing to learn from a single interaction); ``q_u = 0`` is treated the same way.
2. clustering-based (eq. 3): K-means on the backbone's user embeddings; ``p_u ∝ |C(u)|``, the
   size of ``u``'s cluster (normalised by ``Σ_k |C_k|²`` so the probabilities sum to 1); a
   multiset ``U2`` of size ``N2``.
3. repetition penalty (eq. 4): ``U3 = U1 ⊎ U2`` with multiplicity ``M3(u)``; ``ψ_u = C^{M3(u)}``
   and the final multiset ``U_ins`` (size ``N``) is drawn from the *elements of the multiset U3*
   with ``p = ψ_u / Σ_{v∈U3} ψ_v`` each, the sum running over U3's elements as the paper writes
   it. A user thus carries ``M3(u)·C^{M3(u)}`` of the mass: one drawn often by steps 1–2 stays
   more likely (``M·C^M`` grows up to ``M = −1/ln C ≈ 12`` for C = 0.92), each repeat only
   damped by ``C``. (Normalising over *distinct* users instead gives ``p_u ∝ C^{M3(u)}``, which
   makes the users steps 1–2 favour *less* likely than those drawn once: the sample's mean
   number of interactions then falls to the uniform one; ``sampling_metrics`` reports it.)

Drawing ``n`` times with replacement from ``p`` is a multinomial draw, so every multiset is
represented as an int array of per-user counts (index = user id).

``mode="uniform"`` (the ablation) gives every user the same share: ``N // n`` copies each plus
``N mod n`` users drawn without replacement for one more copy, so with ``N ≤ n`` it is a plain
uniform sample of ``N`` distinct users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recranker.errors import RecrankerError
from recranker.sampling_config import SamplingConfig  # declared there: the params schema imports it


@dataclass(frozen=True)
class SampleResult:
    """Per-user counts (length = number of users) of every multiset involved."""

    counts: np.ndarray  # U_ins
    importance: np.ndarray  # U1 (zeros in uniform mode)
    cluster: np.ndarray  # U2 (zeros in uniform mode)
    cluster_labels: np.ndarray | None  # K-means label per user (adaptive mode)


def importance_probabilities(q: np.ndarray) -> np.ndarray:
    """Eq. 2: ``p_u = ln(q_u) / Σ ln(q_v)``; users with ``q_u ≤ 1`` get 0."""
    q = np.asarray(q, dtype=np.float64)
    w = np.log(np.maximum(q, 1.0))
    total = w.sum()
    if total <= 0:
        raise RecrankerError("importance sampling: no user has more than one training interaction")
    return w / total


def cluster_labels(emb: np.ndarray, n_clusters: int, seed: int, n_init: int = 10) -> np.ndarray:
    """K-means cluster of every user (sklearn, seeded)."""
    from sklearn.cluster import KMeans

    emb = np.asarray(emb, dtype=np.float64)
    if emb.ndim != 2 or len(emb) == 0:
        raise RecrankerError(f"clustering: user embeddings must be a 2-d array, got shape {emb.shape}")
    if not 1 <= n_clusters <= len(emb):
        raise RecrankerError(
            f"sampling.n_clusters: must be between 1 and the number of users ({len(emb)}), got {n_clusters}"
        )
    km = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed)
    return km.fit_predict(emb).astype(np.int64)


def cluster_probabilities(labels: np.ndarray) -> np.ndarray:
    """Eq. 3: ``p_u ∝ |C(u)|`` (normalised by ``Σ_k |C_k|²``)."""
    labels = np.asarray(labels, dtype=np.int64)
    sizes = np.bincount(labels).astype(np.float64)
    w = sizes[labels]
    return w / w.sum()


def repetition_probabilities(m3: np.ndarray, penalty: float) -> np.ndarray:
    """Eq. 4 per user: each of the ``M3(u)`` elements of U3 carries ``ψ_u = C^{M3(u)}``, so
    ``p_u ∝ M3(u)·C^{M3(u)}``; 0 for users not in U3."""
    if not 0 < penalty <= 1:
        raise RecrankerError(f"sampling.penalty: must be in (0, 1], got {penalty}")
    m3 = np.asarray(m3, dtype=np.float64)
    psi = m3 * penalty**m3
    total = psi.sum()
    if total <= 0:
        raise RecrankerError("repetition penalty: U1 and U2 are both empty")
    return psi / total


def draw(p: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Per-user counts of ``size`` draws with replacement from ``p``."""
    p = np.asarray(p, dtype=np.float64)
    return rng.multinomial(size, p / p.sum()).astype(np.int64)


def uniform_counts(n_users: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Balanced uniform sample: ``size // n`` copies each, remainder without replacement."""
    counts = np.full(n_users, size // n_users, dtype=np.int64)
    extra = rng.choice(n_users, size=size % n_users, replace=False)
    counts[extra] += 1
    return counts


def sample_users(
    q: np.ndarray,
    embeddings: np.ndarray | None,
    config: SamplingConfig,
    seed: int,
) -> SampleResult:
    """Draw the instruction users. ``q``: training interactions per user (index = user id);
    ``embeddings``: backbone user embeddings [n_users, d] (adaptive mode only)."""
    q = np.asarray(q)
    n = len(q)
    if n == 0:
        raise RecrankerError("sampling: no users")
    rng = np.random.default_rng(seed)
    zeros = np.zeros(n, dtype=np.int64)
    if config.mode == "uniform":
        return SampleResult(uniform_counts(n, config.n_users, rng), zeros, zeros.copy(), None)
    if config.mode != "adaptive":
        raise RecrankerError(f"sampling.mode: unknown mode '{config.mode}'")
    if embeddings is None:
        raise RecrankerError("sampling.mode=adaptive needs backbone user embeddings")
    if len(embeddings) != n:
        raise RecrankerError(
            f"sampling: user embeddings have {len(embeddings)} rows, the data has {n} users"
        )
    u1 = draw(importance_probabilities(q), config.n1, rng)
    labels = cluster_labels(embeddings, config.n_clusters, seed, config.kmeans_n_init)
    u2 = draw(cluster_probabilities(labels), config.n2, rng)
    final = draw(repetition_probabilities(u1 + u2, config.penalty), config.n_users, rng)
    return SampleResult(final, u1, u2, labels)


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0 = all equal)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    if x.size == 0 or x.sum() == 0:
        return 0.0
    n = x.size
    cum = np.cumsum(x)
    return float((n + 1 - 2 * (cum / cum[-1]).sum()) / n)


def long_tail_mask(q: np.ndarray) -> np.ndarray:
    """Long-tail users: the bottom half of users by ``q_u`` (ties broken by user id)."""
    q = np.asarray(q)
    order = np.lexsort((np.arange(len(q)), q))  # ascending q, then id
    mask = np.zeros(len(q), dtype=bool)
    mask[order[: len(q) // 2]] = True
    return mask


def sampling_metrics(result: SampleResult, q: np.ndarray) -> dict[str, float | int]:
    """Distinct users, Gini of the multiplicities of the drawn users, long-tail shares, and the
    mean number of training interactions per drawn instance beside the all-users mean (what a
    uniform draw gives in expectation): how far the sample leans to informative users."""
    counts = result.counts
    drawn = counts > 0
    tail = long_tail_mask(q)
    total = int(counts.sum())
    qf = np.asarray(q, dtype=np.float64)
    return {
        "mean_interactions_sampled": float(counts @ qf / total) if total else 0.0,
        "mean_interactions_uniform": float(qf.mean()) if len(qf) else 0.0,
        "instances": total,
        "distinct_users": int(drawn.sum()),
        "max_multiplicity": int(counts.max()) if total else 0,
        "gini_multiplicity": gini(counts[drawn]),
        "long_tail_share_instances": float(counts[tail].sum() / total) if total else 0.0,
        "long_tail_share_distinct": float((drawn & tail).sum() / drawn.sum()) if total else 0.0,
        "importance_distinct": int((result.importance > 0).sum()),
        "cluster_distinct": int((result.cluster > 0).sum()),
    }


def users_json(result: SampleResult, q: np.ndarray, config: SamplingConfig) -> dict:
    """The `sample` stage output: every drawn user with multiplicity and sources, plus metrics."""
    users = [
        {
            "user_id": int(u),
            "multiplicity": int(result.counts[u]),
            "sources": {"importance": int(result.importance[u]), "cluster": int(result.cluster[u])},
        }
        for u in np.flatnonzero(result.counts)
    ]
    metrics = sampling_metrics(result, q)
    return {
        "users": users,
        "metrics": metrics,
        "definitions": {
            "long_tail": "bottom half of users by number of training interactions (ties by user id)",
            "gini_multiplicity": "Gini coefficient of the multiplicities of the drawn users",
            "mode": config.mode,
        },
    }


def multiset_from_json(obj: dict) -> list[tuple[int, int]]:
    """``[(user_id, multiplicity), ...]`` from a users.json object, sorted by user id."""
    try:
        pairs = sorted((int(u["user_id"]), int(u["multiplicity"])) for u in obj["users"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RecrankerError(f"users.json: malformed entry ({exc})") from None
    return pairs
